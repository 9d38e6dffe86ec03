"""TBPTT(k1, k2) against brute force, in float64.

Brute force for update i: a separate full forward pass from position 0 gives the
state entering the window [w, t); a plain forward and backward over that window
gives the gradient. Both modes must match it within 1e-10 when the weights do not
change between updates.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from conftest import TinyLM
from tbptt_reference import brute_force, grads
from looplm.state import map_state
from looplm.tbptt import Schedule, summed_cross_entropy, truncated_bptt

VOCAB = 7


CELLS = [nn.RNN, nn.GRU, nn.LSTM]  # LSTM: a tuple state (h, c); the others a tensor


def make(cell, bs=3, T=11):
    model = TinyLM(cell).double()
    return model, torch.randint(VOCAB, (bs, T)), torch.randint(VOCAB, (bs, T))




def run(model, inputs, targets, k1, k2, mode, **kw):
    out = []
    for step in truncated_bptt(model, inputs, targets, k1, k2, mode=mode, **kw):
        out.append((grads(model), step.loss, step.state))
        model.zero_grad()
    return out


def assert_close(a, b, tol=1e-10):
    a = a if isinstance(a, (list, tuple)) else [a]
    b = b if isinstance(b, (list, tuple)) else [b]
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x - y).abs().max().item() <= tol


# (k1, k2, T): k1 = k2; k1 < k2 with strides that divide k2 or not, including k1 = 1
# and a window longer than the stream; k2 < k1, also where the last short stride's
# window reaches back into the previous stride (T=10, k1=4, k2=3: W = [7, 10)).
CASES = [(4, 4, 11), (1, 4, 9), (2, 6, 11), (3, 5, 11), (4, 7, 12), (5, 20, 11), (4, 2, 11), (4, 3, 10)]


@pytest.mark.parametrize("mode", ["stored", "recompute"])
@pytest.mark.parametrize("k1,k2,T", CASES)
@pytest.mark.parametrize("cell", CELLS)
def test_matches_brute_force(cell, k1, k2, T, mode):
    model, inputs, targets = make(cell, T=T)
    expected = brute_force(model, inputs, targets, k1, k2)
    got = run(model, inputs, targets, k1, k2, mode)
    assert len(got) == -(-T // k1)
    for (g, loss, state), (g_ref, loss_ref, state_ref) in zip(got, expected):
        assert_close(g, g_ref)
        assert_close(loss, loss_ref)
        assert_close(state, state_ref)
        assert all(not t.requires_grad for t in (state if isinstance(state, tuple) else (state,)))


@pytest.mark.parametrize("cell", CELLS)
def test_one_chunk_is_full_bptt(cell):
    model, inputs, targets = make(cell, T=9)
    logits, _ = model(inputs)
    torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1)).backward()
    full = grads(model)
    model.zero_grad()
    for mode in ("stored", "recompute"):
        (got,) = run(model, inputs, targets, 9, 9, mode)
        assert_close(got[0], full)


@pytest.mark.parametrize("cell", [nn.GRU, nn.LSTM])
def test_initial_state_enters_as_a_constant(cell):
    model, inputs, targets = make(cell, T=8)
    with torch.no_grad():
        after_4 = model(inputs[:, :4])[1]
    leaves = map_state(after_4, lambda t: t.clone().requires_grad_())
    # continuing from the state after 4 steps reproduces the second half of the whole run
    ref = brute_force(model, inputs, targets, 2, 5)
    got = run(model, inputs[:, 4:], targets[:, 4:], 2, 5, "stored", state=leaves)
    for (_, loss, state), (_, loss_ref, state_ref) in zip(got, ref[2:], strict=True):
        assert_close(loss, loss_ref)
        assert_close(state, state_ref)
    assert all(t.grad is None for t in (leaves if isinstance(leaves, tuple) else (leaves,)))


def test_gradients_add_to_existing_grad():
    model, inputs, targets = make(nn.GRU)
    (once,) = [g for g, _, _ in run(model, inputs, targets, 11, 11, "stored")]
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    next(truncated_bptt(model, inputs, targets, 11, 11))
    assert_close(grads(model), [g + 1 for g in once])


def with_activations(model):
    def forward(x, state):
        logits, state, h = model(x, state, return_activations=True)
        return (logits, h), state

    return forward


def penalised_loss(out, targets):
    """Cross-entropy plus an activation penalty, both summed over positions (as AR would be)."""
    logits, h = out
    return summed_cross_entropy(logits, targets) + 0.5 * h.pow(2).sum()


@pytest.mark.parametrize("mode", ["stored", "recompute"])
@pytest.mark.parametrize("k1,k2", [(3, 5), (4, 2)])
def test_custom_forward_and_loss(k1, k2, mode):
    model, inputs, targets = make(nn.LSTM, T=11)
    kw = dict(forward=with_activations(model), loss_fn=penalised_loss)
    expected = brute_force(model, inputs, targets, k1, k2, **kw)
    got = run(model, inputs, targets, k1, k2, mode, **kw)
    for (g, loss, _), (g_ref, loss_ref, _) in zip(got, expected, strict=True):
        assert_close(g, g_ref)
        assert_close(loss, loss_ref)


class Memoryless(nn.Module):
    """Predicts from the current token only; its state (the last embedding) is never read,
    so no gradient reaches an older segment."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 5)
        self.out = nn.Linear(5, VOCAB)

    def forward(self, x, state=None):
        e = self.emb(x)  # (bs, T, 5)
        return self.out(e), e[:, -1].unsqueeze(0)  # state (1, bs, 5)


@pytest.mark.parametrize("mode", ["stored", "recompute"])
def test_model_that_never_reads_its_state(mode):
    model = Memoryless().double()
    inputs, targets = torch.randint(VOCAB, (3, 10)), torch.randint(VOCAB, (3, 10))
    expected = brute_force(model, inputs, targets, 2, 5)
    for (g, loss, _), (g_ref, loss_ref, _) in zip(run(model, inputs, targets, 2, 5, mode), expected, strict=True):
        assert_close(g, g_ref)
        assert_close(loss, loss_ref)


@settings(max_examples=30, deadline=None)
@given(T=st.integers(1, 14), k1=st.integers(1, 6), k2=st.integers(1, 9))
def test_stored_equals_recompute_any_schedule(T, k1, k2):
    torch.manual_seed(T * 100 + k1 * 10 + k2)
    model, inputs, targets = make(nn.LSTM, bs=2, T=T)
    stored = run(model, inputs, targets, k1, k2, "stored")
    recomputed = run(model, inputs, targets, k1, k2, "recompute")
    for (g, loss, _), (g_ref, loss_ref, _) in zip(stored, recomputed, strict=True):
        assert_close(g, g_ref)
        assert_close(loss, loss_ref)


class Counting(nn.Module):
    """Counts the token-steps the wrapped model is run for."""

    def __init__(self, model):
        super().__init__()
        self.model, self.steps = model, 0

    def forward(self, x, state=None):
        self.steps += x.shape[1]
        return self.model(x, state)


@settings(max_examples=40, deadline=None)
@given(T=st.integers(1, 30), k1=st.integers(1, 8), k2=st.integers(1, 12))
def test_stored_runs_every_step_once(T, k1, k2):
    model, inputs, targets = make(nn.RNN, bs=1, T=T)
    counting = Counting(model)
    stored = list(truncated_bptt(counting, inputs, targets, k1, k2, mode="stored"))
    assert counting.steps == T
    counting.steps = 0
    list(truncated_bptt(counting, inputs, targets, k1, k2, mode="recompute"))
    sched = Schedule(T, k1, k2)
    # recompute re-runs each window from the previous anchor: min(w, s) .. t
    expected = sum(sched.stride(i)[1] - min(sched.stride(i)[0], sched.window_start(i))
                   for i in range(sched.n_updates))
    assert counting.steps == expected
    assert sum(step.n_tokens for step in stored) == T
