"""``stored`` TBPTT with the optimiser stepping between updates.

A kept segment's backward must use the weights of the forward that built it.
The reference rebuilds each update's window with, for every stride j in it, a
copy of the weights that stride j's forward ran with, and sums the gradients
those copies receive.
"""

import gc
import weakref

import pytest
import torch
from torch import nn
from torch.func import functional_call

from conftest import TinyLM
from looplm.tbptt import Schedule, stream, summed_cross_entropy, truncated_bptt
from looplm.tbptt.frozen import frozen_weights

VOCAB = 7


def stored_reference(model, inputs, targets, sched, i, weights, starts, stale=True):
    """Update i's gradient when stride j of its window runs with ``weights[j]`` from
    ``starts[j]`` (the state entering stride j); with ``stale=False`` every stride
    uses the current weights ``weights[i]`` instead."""
    s, t = sched.stride(i)
    w = sched.window_start(i)
    j0 = w // sched.k1
    copies = {j: {n: v.clone().requires_grad_() for n, v in weights[j if stale else i].items()}
              for j in range(j0, i + 1)}
    h = starts[j0]
    if w > sched.stride(j0)[0]:
        with torch.no_grad():
            h = functional_call(model, copies[j0], (inputs[:, sched.stride(j0)[0]:w], h))[1]
    for j in range(j0, i + 1):
        b, e = max(w, sched.stride(j)[0]), sched.stride(j)[1]
        logits, h = functional_call(model, copies[j], (inputs[:, b:e], h))
    a = max(s, w)
    loss = summed_cross_entropy(logits[:, a - b:], targets[:, a:t]) / (inputs.shape[0] * (t - s))
    loss.backward()
    # the output layer of the older strides is not on the path: its copies get no grad
    return [sum(c[n].grad for c in copies.values() if c[n].grad is not None)
            for n, _ in model.named_parameters()]


@pytest.mark.parametrize("cell", [nn.RNN, nn.GRU, nn.LSTM])
@pytest.mark.parametrize("k1,k2", [(2, 5), (1, 4), (3, 7)])
def test_kept_segments_backprop_with_the_weights_that_built_them(cell, k1, k2):
    model = TinyLM(cell).double()
    bs, T = 3, 11
    inputs, targets = torch.randint(VOCAB, (bs, T)), torch.randint(VOCAB, (bs, T))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    sched = Schedule(T, k1, k2)
    weights, starts, staleness = [], [None], 0.0
    for i, step in enumerate(truncated_bptt(model, inputs, targets, k1, k2, mode="stored")):
        weights.append({n: p.detach().clone() for n, p in model.named_parameters()})
        got = [p.grad for p in model.parameters()]
        expected = stored_reference(model, inputs, targets, sched, i, weights, starts)
        for g, e in zip(got, expected, strict=True):
            assert (g - e).abs().max().item() < 1e-10
        fresh = stored_reference(model, inputs, targets, sched, i, weights, starts, stale=False)
        staleness = max(staleness, max((g - f).abs().max().item() for g, f in zip(got, fresh)))
        starts.append(step.state)
        opt.step()  # modifies in place the weights that kept graphs were built with
        opt.zero_grad()
    assert staleness > 1e-4  # the steps did change what the kept segments' weights were


def test_frozen_weights_backprop_with_weights_at_forward_time():
    lin = nn.Linear(4, 3).double()
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    lin(x).square().sum().backward()
    expected = x.grad.clone()
    x.grad = None
    with frozen_weights(lin.parameters()):
        y = lin(x).square().sum()
    with torch.no_grad():
        lin.weight.mul_(3.0)
    y.backward()
    assert torch.equal(x.grad, expected)


def test_frozen_weights_still_refuse_modified_activations():
    x = torch.randn(4, requires_grad=True)
    with frozen_weights([]):
        y = x.sigmoid()  # sigmoid saves its output for the backward
    y.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


@pytest.mark.parametrize("k1,k2", [(2, 8), (3, 7), (1, 4)])
def test_stored_keeps_only_the_next_window(k1, k2, monkeypatch):
    """Between updates, the kept segments cover the next window and nothing older."""
    alive = []  # weak references to every segment made

    class Tracked(stream._Segment):
        def __init__(self, *args):
            super().__init__(*args)
            alive.append(weakref.ref(self))

    monkeypatch.setattr(stream, "_Segment", Tracked)
    model = TinyLM(nn.GRU).double()
    T = 60
    inputs, targets = torch.randint(VOCAB, (2, T)), torch.randint(VOCAB, (2, T))
    kept = []
    for _ in truncated_bptt(model, inputs, targets, k1, k2, mode="stored"):
        kept.append(sum(ref() is not None for ref in alive))
        model.zero_grad()
    # the next window holds k2 - k1 steps already run, cut at stride ends and window starts
    assert max(kept) <= 2 * -(-(k2 - k1) // k1)
    assert sum(ref() is not None for ref in alive) == 0  # the stream's end frees them all


def test_frozen_weights_do_not_keep_dead_graphs_alive():
    """A saved output must not hold its own graph: that cycle leaked every kept graph."""
    x = torch.randn(4, requires_grad=True)
    with frozen_weights([]):
        y = x.sigmoid()  # saves y itself
    y.sum().backward(retain_graph=True)
    dead = weakref.ref(y)
    del y
    gc.collect()
    assert dead() is None
