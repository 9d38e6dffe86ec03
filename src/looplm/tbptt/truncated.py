"""TBPTT(k1, k2): one update every k1 steps, each backpropagating through k2 steps.

The stream is walked in strides of k1 steps (the last may be shorter). After the
stride [s, t) comes one update whose window is W = [max(0, t - k2), t): the state
entering W is a constant, and the update's gradient is that of

    (sum of the loss over the positions of the stride that lie in W) / (bs * (t - s))

Its reported loss is the mean loss over the whole stride. Legend: ``#`` loss and
gradient, ``-`` gradient flows through but no loss, ``.`` loss reported, no gradient::

    k1 = 3, k2 = 5, T = 10      position  0 1 2 3 4 5 6 7 8 9
    update 0: stride [0, 3)  W = [0, 3)   # # #
    update 1: stride [3, 6)  W = [1, 6)     - - # # #
    update 2: stride [6, 9)  W = [4, 9)           - - # # #
    update 3: stride [9,10)  W = [5,10)             - - - - #

    k1 = 4, k2 = 2, T = 8
    update 0: stride [0, 4)  W = [2, 4)   . . # #
    update 1: stride [4, 8)  W = [6, 8)           . . # #

So k1 = k2 = sl is the chapter's "detach every chunk"; k1 < k2 lets every loss
see at least k2 - k1 + 1 steps of history; k2 < k1 runs the oldest k1 - k2 steps
of each stride without gradient.

Two exact ways to get the k1 < k2 gradients:

``recompute`` keeps the detached state at the next window's start and re-runs the
whole window with the current weights at every update (forward passes per token
about k2 / k1). It is the reference.

``stored`` runs the forward of every step once. The stream is cut into segments at
stride ends and window starts; each segment's input state is a fresh leaf and its
graph is kept while a later window still covers it. An update backpropagates its
loss through the newest segment, then hands the gradient that reached the leaf
to the previous segment's output state, newest first, down to its window start::

    k1 = 3, k2 = 5, T = 10: cuts at the stride ends 3, 6, 9 and the window starts 1, 4, 5
    segments   [0,1) [1,3) [3,4) [4,5) [5,6) [6,9) [9,10)
    update 2                     [4,5) <- [5,6) <- [6,9) <- loss of the stride [6, 9)

The caller may step the optimiser between updates: a kept graph saved copies of
the weights it read (:mod:`looplm.tbptt.frozen`), so its backward uses the
weights of the forward that built it, which is what "stored" means. With the
weights unchanged between updates, ``stored`` and ``recompute`` give the same
gradients; after a step they differ by that staleness only.
"""

from __future__ import annotations

from collections import deque
from contextlib import nullcontext
from dataclasses import dataclass
from itertools import pairwise
from typing import Iterator

import torch
from torch import Tensor, nn

from looplm.errors import LooplmError
from looplm.state import State, detach_state, map_state
from looplm.tbptt.common import (
    Forward,
    LossFn,
    TBPTTStep,
    check_count,
    check_stream,
    checked_state,
    no_grad_loss,
    run_chunk,
    summed_cross_entropy,
)
from looplm.tbptt.frozen import frozen_weights

MODES = ("stored", "recompute")


@dataclass(frozen=True)
class Schedule:
    """Where the strides and windows of TBPTT(k1, k2) fall on a stream of T steps."""

    T: int
    k1: int
    k2: int

    @property
    def n_updates(self) -> int:
        return -(-self.T // self.k1)

    def stride(self, i: int) -> tuple[int, int]:
        """[s, t) of update i."""
        return i * self.k1, min((i + 1) * self.k1, self.T)

    def window_start(self, i: int) -> int:
        """Start of update i's window; for i = n_updates (no such update) the end T."""
        if i >= self.n_updates:
            return self.T
        return max(0, self.stride(i)[1] - self.k2)


def truncated_bptt(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    k1: int,
    k2: int,
    state: State = None,
    loss_fn: LossFn | None = None,
    mode: str = "stored",
    *,
    forward: Forward | None = None,
) -> Iterator[TBPTTStep]:
    """Train ``model`` on a stream with TBPTT(k1, k2), yielding once per update.

    inputs, targets: (bs, T) token ids; targets[:, t] is what the step at t predicts. Any
        integer dtype (e.g. a uint16 memmap): each piece is made int64 as it is run.
    k1: steps between updates; k2: steps each update backpropagates through.
    state: the state entering position 0 (None for zeros), treated as a constant.
    loss_fn: ``loss_fn(out, targets) -> summed loss``; defaults to summed cross-entropy.
    mode: ``"stored"`` (forward once per step) or ``"recompute"`` (the reference).
    forward: ``forward(x, state) -> (out, state)`` in place of ``model(x, state)``, e.g.
        to hand activations to a loss with AR/TAR; ``model`` still names the parameters.

    Each yield (:class:`TBPTTStep`) comes after the update's gradients were added to
    the parameters' ``.grad`` (as ``backward()`` does): step the optimiser and zero
    the gradients between yields. Arguments are checked at the call, before the
    first yield. Feed the whole stream at once: windows cannot reach back into an
    earlier call, whose state enters this one as a constant.
    """
    check_count("k1", k1)
    check_count("k2", k2)
    if mode not in MODES:
        raise LooplmError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    _, T = check_stream(inputs, targets)
    args = (Schedule(T, k1, k2), model if forward is None else forward, loss_fn or summed_cross_entropy,
            inputs, targets, checked_state(state))
    if mode == "recompute":
        return _recompute(*args)
    return _stored(*args, params=list(model.parameters()))


def _recompute(sched: Schedule, forward: Forward, loss_fn: LossFn, inputs: Tensor, targets: Tensor,
               state: State) -> Iterator[TBPTTStep]:
    anchor, anchor_state = 0, state  # detached state at the start of the next forward
    for i in range(sched.n_updates):
        s, t = sched.stride(i)
        w = sched.window_start(i)
        next_anchor = min(sched.window_start(i + 1), t)
        n_tokens = inputs.shape[0] * (t - s)
        # pieces cut where gradients start (w), losses start (s) and the next update's
        # forward will start (next_anchor), whose state is kept
        cuts = sorted({anchor, s, w, next_anchor, t})
        h, trained, untrained = anchor_state, [], []
        for b, e in pairwise(cuts):
            x, y = inputs[:, b:e].long(), targets[:, b:e].long()
            if b < w:
                loss, h = no_grad_loss(forward, loss_fn, x, y, h)
                untrained.append(loss)
            else:
                out, h = run_chunk(forward, x, h)
                if b >= s:
                    trained.append(loss_fn(out, y))
            if e == next_anchor:
                anchor_state = detach_state(h)
        anchor = next_anchor
        trained_sum = torch.stack(trained).sum()
        (trained_sum / n_tokens).backward()
        loss = (trained_sum.detach() + sum(untrained)) / n_tokens
        yield TBPTTStep(loss, detach_state(h), n_tokens)


@dataclass
class _Segment:
    """A run of steps whose graph is kept for later windows."""

    start: int
    leaves: State  # its input state as leaves requiring grad (None: no gradient goes further back)
    out: State  # its output state, still attached to the segment's graph


def _leaves(state: State) -> State:
    return map_state(state, lambda t: t.detach().requires_grad_())


def _stored(sched: Schedule, forward: Forward, loss_fn: LossFn, inputs: Tensor, targets: Tensor,
            state: State, params: list[Tensor]) -> Iterator[TBPTTStep]:
    chain: deque[_Segment] = deque()  # newest last; the oldest starts at the current window
    h = state
    next_start = 0  # index of the first update whose window start is not yet behind us
    for i in range(sched.n_updates):
        s, t = sched.stride(i)
        w, w_next = sched.window_start(i), sched.window_start(i + 1)
        n_tokens = inputs.shape[0] * (t - s)
        cuts = [s]
        while sched.window_start(next_start) < t:
            if sched.window_start(next_start) > cuts[-1]:
                cuts.append(sched.window_start(next_start))
            next_start += 1
        cuts.append(t)

        parts, untrained = [], []
        # graphs kept past this update must not hold weights that step() will modify
        guard = frozen_weights(params) if w_next < t else nullcontext()
        with guard:
            for b, e in pairwise(cuts):
                x, y = inputs[:, b:e].long(), targets[:, b:e].long()
                if b < w:
                    loss, h = no_grad_loss(forward, loss_fn, x, y, h)
                    untrained.append(loss)
                    continue
                leaves = _leaves(h) if b > w else None
                out, h = run_chunk(forward, x, detach_state(h) if leaves is None else leaves)
                parts.append(loss_fn(out, y))
                chain.append(_Segment(b, leaves, h))

        _backward_chain(chain, parts, n_tokens, keep_from=w_next)
        while chain and chain[0].start < w_next:
            chain.popleft()
        trained_sum = torch.stack(parts).sum().detach()
        yield TBPTTStep((trained_sum + sum(untrained)) / n_tokens, detach_state(h), n_tokens)


def _backward_chain(chain: deque[_Segment], parts: list[Tensor], n_tokens: int, keep_from: int) -> None:
    """Backpropagate this update's loss ``parts`` (one per newest segment) through the chain.

    The gradient reaching a segment's leaves becomes the gradient of the previous
    segment's output. Graphs of segments starting at or after ``keep_from`` (the
    next window's start) are kept for the next update; the others are freed.
    """
    grad: tuple[Tensor | None, ...] = ()
    for age, seg in enumerate(reversed(chain)):
        roots = [parts[-1 - age] / n_tokens] if age < len(parts) else []
        grads: list[Tensor | None] = [None] * len(roots)
        for out, g in zip(_tensors(seg.out), grad):
            if g is not None:
                roots.append(out)
                grads.append(g)
        torch.autograd.backward(roots, grads, retain_graph=seg.start >= keep_from)
        if seg.leaves is None:
            return
        grad = tuple(leaf.grad for leaf in _tensors(seg.leaves))
        for leaf in _tensors(seg.leaves):
            leaf.grad = None


def _tensors(state: State) -> tuple[Tensor, ...]:
    if state is None:
        return ()
    return (state,) if isinstance(state, Tensor) else state
