"""looplm.nn.RNN/GRU/LSTM equal torch.nn's: outputs, final states and every gradient.

Each case draws its sizes from a seeded generator, loads a torch.nn layer's state_dict
into ours and compares within 1e-5 (float32) or 1e-10 (float64), absolute.
"""

import random
import zlib

import pytest
import torch

from looplm.nn import GRU, LSTM, RNN

KINDS = {
    "rnn_tanh": (RNN, torch.nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
    "gru": (GRU, torch.nn.GRU, {}),
    "lstm": (LSTM, torch.nn.LSTM, {}),
}
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def make_pair(kind, dtype, fast, **kw):
    ours_cls, torch_cls, extra = KINDS[kind]
    theirs = torch_cls(**kw, **extra).to(dtype)
    ours = ours_cls(**kw, **extra, fast=fast).to(dtype)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def run(layer, x, hx, probes):
    """Output, final states and the gradients of a fixed random projection of them."""
    out, state = layer(x, hx)
    state = as_tuple(state)
    loss = (out * probes[0]).sum() + sum((s * p).sum() for s, p in zip(state, probes[1:]))
    leaves = [x, *(as_tuple(hx) if hx is not None else ()), *layer.parameters()]
    return (out, *state), torch.autograd.grad(loss, leaves)


def assert_all_close(ours, theirs, tol):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=tol, rtol=0)


@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("path", ["cxx", "python", "reference"])
@pytest.mark.parametrize("kind", KINDS)
def test_equal_to_torch(kind, path, dtype, batch_first, num_layers, recurrence_path):
    recurrence_path(path)
    fast = path != "reference"
    seed = zlib.crc32(f"{kind} {fast} {dtype} {batch_first} {num_layers}".encode())
    rng = random.Random(seed)
    torch.manual_seed(seed)
    n_in, n_hid, bs, sl = rng.randint(1, 9), rng.randint(1, 12), rng.randint(1, 5), rng.randint(1, 9)
    bias = not (batch_first and num_layers == 2)              # each layer kind once without
    ours, theirs = make_pair(kind, dtype, fast, input_size=n_in, hidden_size=n_hid,
                             num_layers=num_layers, batch_first=batch_first, bias=bias)
    x = torch.randn((bs, sl, n_in) if batch_first else (sl, bs, n_in), dtype=dtype, requires_grad=True)
    hx = None                                                 # zeros, once per layer kind
    if batch_first or num_layers > 1:
        hx = tuple(torch.randn(num_layers, bs, n_hid, dtype=dtype, requires_grad=True)
                   for _ in range(2 if kind == "lstm" else 1))
        hx = hx if kind == "lstm" else hx[0]
    out_shape = (bs, sl, n_hid) if batch_first else (sl, bs, n_hid)
    probes = [torch.randn(out_shape, dtype=dtype), torch.randn(num_layers, bs, n_hid, dtype=dtype),
              torch.randn(num_layers, bs, n_hid, dtype=dtype)]
    values, grads = run(ours, x, hx, probes)
    ref_values, ref_grads = run(theirs, x, hx, probes)
    assert_all_close(values, ref_values, TOL[dtype])
    assert_all_close(grads, ref_grads, TOL[dtype])


@pytest.mark.parametrize("path", ["cxx", "python"])
@pytest.mark.parametrize("kind", KINDS)
def test_fast_path_equals_reference_loop(kind, path, recurrence_path):
    recurrence_path(path)
    fast, _ = make_pair(kind, torch.float64, True, input_size=6, hidden_size=10, num_layers=2)
    ref, _ = make_pair(kind, torch.float64, False, input_size=6, hidden_size=10, num_layers=2)
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(20, 4, 6, dtype=torch.float64, requires_grad=True)
    probes = [torch.randn(s, dtype=torch.float64) for s in [(20, 4, 10), (2, 4, 10), (2, 4, 10)]]
    values, grads = run(fast, x, None, probes)
    ref_values, ref_grads = run(ref, x, None, probes)
    assert_all_close(values, ref_values, 1e-12)
    assert_all_close(grads, ref_grads, 1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bias", [True, False])
def test_same_state_dict_keys_and_shapes(kind, bias):
    ours, theirs = make_pair(kind, torch.float32, True, input_size=3, hidden_size=5,
                             num_layers=3, bias=bias)
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
        {k: v.shape for k, v in theirs.state_dict().items()}


@pytest.mark.parametrize("kind", KINDS)
def test_unbatched_input(kind):
    torch.manual_seed(1)
    ours, theirs = make_pair(kind, torch.float64, True, input_size=4, hidden_size=3, num_layers=2)
    x = torch.randn(7, 4, dtype=torch.float64)
    hx = tuple(torch.randn(2, 3, dtype=torch.float64) for _ in range(2))
    hx = hx if kind == "lstm" else hx[0]
    (out, state), (ref_out, ref_state) = ours(x, hx), theirs(x, hx)
    assert out.shape == (7, 3)
    assert_all_close((out, *as_tuple(state)), (ref_out, *as_tuple(ref_state)), 1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_between_layers(kind):
    torch.manual_seed(2)
    fast, theirs = make_pair(kind, torch.float64, True, input_size=4, hidden_size=8,
                             num_layers=2, dropout=0.5)
    ref, _ = make_pair(kind, torch.float64, False, input_size=4, hidden_size=8,
                       num_layers=2, dropout=0.5)
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    for layer in (fast, ref, theirs):
        layer.eval()
    torch.testing.assert_close(fast(x)[0], theirs(x)[0], atol=1e-10, rtol=0)
    fast.train(), ref.train()
    torch.manual_seed(3)
    dropped = fast(x)[0]
    torch.manual_seed(3)
    torch.testing.assert_close(ref(x)[0], dropped, atol=1e-12, rtol=0)
    assert not torch.allclose(dropped, theirs(x)[0])


def test_weights_argument_replaces_a_parameter_for_one_call():
    torch.manual_seed(4)
    lstm = LSTM(3, 4, num_layers=2)
    x = torch.randn(5, 2, 3)
    other = torch.randn_like(lstm.weight_hh_l1)
    out, _ = lstm(x, weights={"weight_hh_l1": other})
    copy = LSTM(3, 4, num_layers=2)
    copy.load_state_dict({**lstm.state_dict(), "weight_hh_l1": other})
    torch.testing.assert_close(out, copy(x)[0])
    assert not torch.equal(lstm.weight_hh_l1, other)
    with pytest.raises(ValueError, match="weight_hh_l9"):
        lstm(x, weights={"weight_hh_l9": other})


def test_constructor_arguments_match_torch_positionally():
    ours, theirs = LSTM(3, 4, 2, False, True, 0.25), torch.nn.LSTM(3, 4, 2, False, True, 0.25)
    for name in ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout"):
        assert getattr(ours, name) == getattr(theirs, name)
    assert RNN(3, 4, 1, "relu").nonlinearity == torch.nn.RNN(3, 4, 1, "relu").nonlinearity


def test_wrong_hidden_shape_is_refused():
    with pytest.raises(RuntimeError, match="Expected hidden size"):
        GRU(3, 4)(torch.randn(5, 2, 3), torch.zeros(1, 3, 4))
