"""Bad arguments to the strategies fail at the call with a LooplmError naming the problem."""

import re

import pytest
import torch

from conftest import TinyLM
from looplm.errors import LooplmError
from looplm.tbptt import burn_in, overlapping_chunks, truncated_bptt

VOCAB = 5


class CountAsInt(TinyLM):
    """Carries a step count as a Python int, which is not a tensor: TBPTT cannot detach it."""

    def forward(self, x, state=None):
        logits, (h, c) = super().forward(x)
        return logits, {"lstm": (h, c), "steps": x.shape[1]}


class StringState(TinyLM):
    def forward(self, x, state=None):
        logits, state = super().forward(x)
        return logits, [state, "label"]


@pytest.fixture
def stream():
    x = torch.randint(VOCAB, (2, 12))
    return x, x.roll(-1, dims=1)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(k1=0, k2=4), "k1 must be an integer >= 1, got 0"),
        (dict(k1=4, k2=0), "k2 must be an integer >= 1, got 0"),
        (dict(k1=-1, k2=4), "k1 must be an integer >= 1"),
        (dict(k1=2.0, k2=4), "k1 must be an integer >= 1, got 2.0"),
        (dict(k1=4, k2=4, mode="fast"), "mode must be one of stored, recompute, got 'fast'"),
        (dict(k1=4, k2=4, time_dim=0), "time_dim must be an integer >= 1, got 0"),
        (dict(k1=4, k2=4, state={"h": torch.zeros(1, 2, 4), "n": 3}),
         "the initial state must be a pytree of tensors (tensor, tuple, list, dict; None leaves allowed), "
         "got a leaf of type int"),
    ],
)
def test_truncated_bptt_refuses(stream, kwargs, message):
    with pytest.raises(LooplmError, match=re.escape(message)):
        truncated_bptt(TinyLM(), *stream, **kwargs)


def test_refuses_a_stream_that_is_not_rows(stream):
    x, y = stream
    no_time = "inputs and targets need a time dim 1 after the batch dim 0 (e.g. (bs, T) for time_dim=1), " \
              "got shapes (24,) and (24,)"
    with pytest.raises(LooplmError, match=re.escape(no_time)):
        truncated_bptt(TinyLM(), x.flatten(), y.flatten(), 4, 4)
    with pytest.raises(LooplmError, match=re.escape("the same number of steps >= 1 (dim 1), got (2, 12) and (2, 11)")):
        truncated_bptt(TinyLM(), x, y[:, 1:], 4, 4)
    with pytest.raises(LooplmError, match=re.escape("same batch size (dim 0)")):
        truncated_bptt(TinyLM(), x, y[:1], 4, 4)
    with pytest.raises(LooplmError, match=re.escape("need a time dim 2")):
        truncated_bptt(TinyLM(), x, y, 4, 4, time_dim=2)
    with pytest.raises(LooplmError, match=re.escape(no_time)):
        overlapping_chunks(TinyLM(), x.flatten(), y.flatten(), k=4)


@pytest.mark.parametrize("model,name", [(CountAsInt(), "int"), (StringState(), "str")])
@pytest.mark.parametrize("mode", ["stored", "recompute"])
def test_refuses_a_model_whose_state_is_not_tensors(stream, model, name, mode):
    message = f"the model returned a state with a leaf of type {name}; a state must be a pytree of tensors"
    with pytest.raises(LooplmError, match=re.escape(message)):
        next(truncated_bptt(model, *stream, 4, 8, mode=mode))
    with pytest.raises(LooplmError, match=re.escape(message)):
        next(burn_in(model, *stream, k=4, burn=2))


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda m, x, y: overlapping_chunks(m, x, y, k=4, overlap=4), "overlap must be smaller than the window k=4, got overlap=4"),
        (lambda m, x, y: overlapping_chunks(m, x, y, k=4, overlap=-1), "overlap must be an integer >= 0"),
        (lambda m, x, y: overlapping_chunks(m, x, y, k=0), "k must be an integer >= 1"),
        (lambda m, x, y: burn_in(m, x, y, k=4, burn=4), "burn-in of 4 steps leaves nothing to train in windows of k=4"),
        (lambda m, x, y: burn_in(m, x, y, k=20, burn=12), "burn-in of 12 steps leaves nothing to train in a stream of 12 steps"),
        (lambda m, x, y: burn_in(m, x, y, k=4, burn=-1), "burn must be an integer >= 0"),
    ],
)
def test_stateless_strategies_refuse(stream, call, message):
    with pytest.raises(LooplmError, match=message):
        call(TinyLM(), *stream)
