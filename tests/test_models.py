import pytest
import torch

from looplm.errors import LooplmError
from looplm.models import MODELS, build_model

VOCAB = 30


def _x(bs, sl):
    return torch.randint(0, VOCAB, (bs, sl))


def test_lm1_and_lm2_compute_the_same_function():
    torch.manual_seed(3)
    lm1 = build_model("lm1", VOCAB)
    torch.manual_seed(3)
    lm2 = build_model("lm2", VOCAB)
    for a, b in zip(lm1.parameters(), lm2.parameters()):
        assert torch.equal(a, b)  # same seed -> same weights
    x = _x(8, 3)
    torch.testing.assert_close(lm1(x)[0], lm2(x)[0], rtol=1e-5, atol=1e-6)
    lm2_slow = build_model("lm2", VOCAB, fast=False)
    lm2_slow.load_state_dict(lm2.state_dict())
    assert torch.equal(lm1(x)[0], lm2_slow(x)[0])  # the same arithmetic, written as a loop


@pytest.mark.parametrize("name", ["lm2", "lm3", "lm4"])
def test_fast_path_equals_the_readable_loop(name):
    fast = build_model(name, VOCAB).double()
    slow = build_model(name, VOCAB, fast=False).double()
    slow.load_state_dict(fast.state_dict())
    x, h = _x(5, 7), torch.randn(1, 5, 64, dtype=torch.float64)
    out_fast, state_fast = fast(x, h)
    out_slow, state_slow = slow(x, h)
    torch.testing.assert_close(out_fast, out_slow, rtol=1e-10, atol=1e-10)
    if state_fast is not None:
        torch.testing.assert_close(state_fast, state_slow, rtol=1e-10, atol=1e-10)
    (out_fast.square().sum()).backward()
    (out_slow.square().sum()).backward()
    for p, q in zip(fast.parameters(), slow.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", list(MODELS))
def test_shapes_and_a_change_of_batch_size(name):
    model = build_model(name, VOCAB)
    sl = 3
    logits, state = model(_x(8, sl))
    expected = (8, VOCAB) if model.layout == "last" else (8, sl, VOCAB)
    assert logits.shape == expected
    # a state made at bs=8 must not break a call at bs=2 (evaluation, generation)
    logits2, _ = model(_x(2, sl), state)
    assert logits2.shape[0] == 2


@pytest.mark.parametrize("name", ["lm3", "lm4", "lm5", "lm6", "lm7"])
def test_state_carries_the_stream(name):
    """Two chunks with the carried state equal one long chunk (eval mode: no dropout)."""
    model = build_model(name, VOCAB).double().eval()
    x = _x(4, 6)
    if model.layout == "last":
        _, state = model(x[:, :3])
        whole, _ = model(x)
        part, _ = model(x[:, 3:], state)
        torch.testing.assert_close(part, whole)
    else:
        first, state = model(x[:, :3])
        second, _ = model(x[:, 3:], state)
        whole, _ = model(x)
        torch.testing.assert_close(torch.cat([first, second], 1), whole)


def test_stateless_models_ignore_the_state():
    model = build_model("lm2", VOCAB)
    assert model(_x(4, 3))[1] is None


def test_lm7_ties_weights_and_returns_activations():
    model = build_model("lm7", VOCAB)
    assert model.h_o.weight is model.i_h.weight
    model.train()
    logits, state, (raw, dropped) = model(_x(4, 5), return_activations=True)
    assert raw.shape == dropped.shape == (4, 5, 64)
    zeros = dropped == 0
    # kept values scaled by 1/(1-p) as the 15-bit mask realises p (within 1e-4)
    assert zeros.any() and torch.allclose(dropped[~zeros], raw[~zeros] / (1 - 0.4), rtol=1e-4)


def test_lm1_needs_three_tokens():
    with pytest.raises(ValueError, match="exactly 3"):
        build_model("lm1", VOCAB)(_x(2, 4))


@pytest.mark.parametrize("name, overrides, message", [
    ("lm6", dict(n_layers=0), "n_layers must be at least 1"),
    ("lm7", dict(p=1.0), r"p must be in \[0, 1\)"),
    ("lm6", dict(n_hidden=0), "n_hidden and n_layers must be at least 1"),
    ("lm4", dict(n_hidden=0), "n_hidden must be at least 1"),
    ("lm4", dict(n_layers=2), "model lm4 has no setting 'n_layers'"),
    ("lm6", dict(p=0.1), "model lm6 has no setting 'p'"),
])
def test_bad_config(name, overrides, message):
    with pytest.raises(LooplmError, match=message):
        build_model(name, VOCAB, **overrides)


def test_unknown_model():
    with pytest.raises(LooplmError, match="unknown model 'lm9'"):
        build_model("lm9", VOCAB)


TWINS = [("lm6-scratch-gru", "lm6-gru"), ("lm6-scratch-lstm", "lm6")]  # (from scratch, PyTorch's)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("scratch, builtin", TWINS)
def test_lm6_from_scratch_equals_lm6_built_in(scratch, builtin, fast):
    """The built-in model's weights loaded into the scratch one: same logits and states, chunk after chunk."""
    ours, theirs = build_model(scratch, VOCAB, fast=fast), build_model(builtin, VOCAB)
    ours.load_state_dict(theirs.state_dict())
    x = _x(6, 10)
    state_ours = state_theirs = None
    for chunk in (x[:, :5], x[:, 5:]):
        logits_ours, state_ours = ours(chunk, state_ours)
        logits_theirs, state_theirs = theirs(chunk, state_theirs)
        torch.testing.assert_close(logits_ours, logits_theirs, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(state_ours, state_theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scratch, builtin", TWINS)
def test_lm6_from_scratch_starts_from_the_built_in_weights(scratch, builtin):
    """Under one seed the twins draw the same weights, so they train alike (the chapter 12 report says so)."""
    torch.manual_seed(5)
    ours = build_model(scratch, VOCAB).state_dict()
    torch.manual_seed(5)
    theirs = build_model(builtin, VOCAB).state_dict()
    assert list(ours) == list(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


@pytest.mark.parametrize("name, is_pair", [("lm6-gru", False), ("lm6-scratch-gru", False), ("lm6-scratch-lstm", True)])
def test_lm6_variants_carry_their_state(name, is_pair):
    """A GRU's state is h, an LSTM's (h, c); either way two chunks equal one long chunk."""
    model = build_model(name, VOCAB, n_hidden=16).double().eval()
    x = _x(4, 6)
    first, state = model(x[:, :3])
    assert isinstance(state, tuple) == is_pair
    second, _ = model(x[:, 3:], state)
    whole, _ = model(x)
    torch.testing.assert_close(torch.cat([first, second], 1), whole)
