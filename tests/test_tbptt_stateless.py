"""Overlapping chunks and burn-in: every window starts from a fresh state."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from conftest import TinyLM
from looplm.tbptt import burn_in, overlapping_chunks, summed_cross_entropy

VOCAB = 7


def brute_force(model, inputs, targets, windows):
    """Gradients and losses for windows given as (start, first trained, end)."""
    out = []
    for b, m, e in windows:
        with torch.no_grad():
            state = model(inputs[:, b:m])[1] if m > b else None
        model.zero_grad()
        logits, _ = model(inputs[:, m:e], state)
        loss = summed_cross_entropy(logits, targets[:, m:e]) / (inputs.shape[0] * (e - m))
        loss.backward()
        out.append(([p.grad.clone() for p in model.parameters()], loss.detach()))
    model.zero_grad()
    return out


def check(model, steps, expected):
    n = 0
    for step, (grads, loss) in zip(steps, expected, strict=True):
        for p, g in zip(model.parameters(), grads):
            assert (p.grad - g).abs().max().item() < 1e-10
        assert (step.loss - loss).abs().item() < 1e-10
        model.zero_grad()
        n += 1
    assert n == len(expected)


@pytest.mark.parametrize("cell", [nn.RNN, nn.GRU, nn.LSTM])
def test_overlapping_chunks_match_brute_force(cell):
    model = TinyLM(cell).double()
    inputs, targets = torch.randint(VOCAB, (3, 10)), torch.randint(VOCAB, (3, 10))
    windows = [(0, 0, 4), (3, 3, 7), (6, 6, 10)]  # k=4, overlap=1: the module's diagram
    expected = brute_force(model, inputs, targets, windows)
    check(model, overlapping_chunks(model, inputs, targets, k=4, overlap=1), expected)


@pytest.mark.parametrize("cell", [nn.RNN, nn.GRU, nn.LSTM])
def test_burn_in_matches_brute_force(cell):
    model = TinyLM(cell).double()
    inputs, targets = torch.randint(VOCAB, (3, 9)), torch.randint(VOCAB, (3, 9))
    windows = [(0, 2, 4), (2, 4, 6), (4, 6, 8), (6, 8, 9)]  # k=4, burn=2: the module's diagram
    expected = brute_force(model, inputs, targets, windows)
    check(model, burn_in(model, inputs, targets, k=4, burn=2), expected)


class Recorder(nn.Module):
    """Records every chunk it runs as (start, end, with gradient)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(1, VOCAB)
        self.runs = []

    def forward(self, x, state=None):
        start = x.storage_offset()  # x is a slice of a (1, T) stream
        self.runs.append((start, start + x.shape[1], torch.is_grad_enabled()))
        return self.lin(x.unsqueeze(-1).float()), None


@settings(max_examples=60, deadline=None)
@given(T=st.integers(1, 40), k=st.integers(1, 9), data=st.data())
def test_overlapping_windows_cover_the_stream(T, k, data):
    overlap = data.draw(st.integers(0, k - 1))
    model, stream = Recorder(), torch.zeros(1, T, dtype=torch.long)
    steps = list(overlapping_chunks(model, stream, stream, k, overlap))
    starts = [b for b, _, _ in model.runs]
    assert starts == list(range(0, starts[-1] + 1, k - overlap))
    assert all(e == min(b + k, T) and grad for b, e, grad in model.runs)
    assert model.runs[-1][1] == T and (len(starts) == 1 or model.runs[-2][1] < T)
    assert [s.n_tokens for s in steps] == [e - b for b, e, _ in model.runs]


@settings(max_examples=60, deadline=None)
@given(T=st.integers(2, 40), k=st.integers(2, 9), data=st.data())
def test_burn_in_trains_each_position_once(T, k, data):
    burn = data.draw(st.integers(1, min(k, T) - 1))
    model, stream = Recorder(), torch.zeros(1, T, dtype=torch.long)
    steps = list(burn_in(model, stream, stream, k, burn))
    burns, trained = model.runs[0::2], model.runs[1::2]
    assert all(not grad and e - b == burn for b, e, grad in burns)
    assert all(grad and b == prev[1] for (b, _, grad), prev in zip(trained, burns))
    covered = [p for b, e, _ in trained for p in range(b, e)]
    assert covered == list(range(burn, T))
    assert [s.n_tokens for s in steps] == [e - b for b, e, _ in trained]
