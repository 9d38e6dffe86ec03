"""The plain lstm and gru language models."""

import pytest
import torch

from looplm.errors import LooplmError
from looplm.models import build_model

KINDS = ["lstm", "gru"]


def small(kind, **kw):
    return build_model(kind, 11, **{"emb_sz": 6, "n_hidden": 8, "n_layers": 2, "p": 0.0, **kw}).eval()


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_and_state(kind):
    model = small(kind)
    x = torch.randint(0, 11, (3, 5))
    logits, state = model(x, None)
    assert logits.shape == (3, 5, 11) and model.layout == "every"
    h = state[0] if kind == "lstm" else state
    assert h.shape == (2, 3, 8)
    logits, _ = model(x[:1], state)  # a state of another batch size means zeros, not a crash
    assert torch.allclose(logits, model(x[:1], None)[0])


@pytest.mark.parametrize("kind", KINDS)
def test_the_state_carries_the_stream(kind):
    """Two chunks with the state carried = one call over both."""
    model = small(kind)
    x = torch.randint(0, 11, (2, 10))
    whole, _ = model(x, None)
    first, state = model(x[:, :4], None)
    second, _ = model(x[:, 4:], state)
    assert torch.allclose(torch.cat([first, second], 1), whole, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_scratch_layers_give_the_same_numbers(kind):
    ref = small(kind)
    scratch = small(kind, scratch=True)
    scratch.load_state_dict(ref.state_dict())
    x = torch.randint(0, 11, (2, 7))
    (a, sa), (b, sb) = ref(x), scratch(x)
    assert torch.allclose(a, b, atol=1e-5)
    as_tuple = lambda s: s if isinstance(s, tuple) else (s,)  # noqa: E731
    assert all(torch.allclose(s, t, atol=1e-5) for s, t in zip(as_tuple(sa), as_tuple(sb)))


@pytest.mark.parametrize("kind", KINDS)
def test_tied_weights(kind):
    same = small(kind, emb_sz=8, tie_weights=True)
    assert same.decoder.weight is same.encoder.weight and same.proj is None
    other = small(kind, tie_weights=True)  # emb_sz 6 != n_hidden 8: a projection between
    assert other.decoder.weight is other.encoder.weight and other.proj.weight.shape == (6, 8)
    assert other(torch.zeros(1, 3, dtype=torch.long))[0].shape == (1, 3, 11)


def test_activations_for_ar_tar():
    model = small("lstm", p=0.5).train()
    logits, _, (raw, dropped) = model(torch.zeros(2, 4, dtype=torch.long), None, return_activations=True)
    assert raw.shape == dropped.shape == (2, 4, 8)


@pytest.mark.parametrize("bad, message", [
    ({"p": 1.0}, r"the dropout p must be in \[0, 1\), got 1.0"),
    ({"n_layers": 0}, "emb_sz, n_hidden and n_layers must be at least 1, got 11, 6, 8, 0"),
    ({"emb_sz": 0}, "emb_sz, n_hidden and n_layers must be at least 1, got 11, 0, 8, 2"),
])
def test_bad_config(bad, message):
    with pytest.raises(LooplmError, match=message):
        small("gru", **bad)
