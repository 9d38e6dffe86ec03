"""TBPTT(k1, k2): one update every k1 steps, each backpropagating through k2 steps.

The stream is walked in strides of k1 steps (the last may be shorter). After the
stride [s, t) comes one update whose window is W = [max(0, t - k2), t): the state
entering W is a constant, and the update's gradient is that of

    (sum of the loss over the positions of the stride that lie in W) / (bs * (t - s))

Its reported loss is the mean loss over the whole stride. "The loss at a position"
is ``loss_fn(out, targets)`` summed over it: cross-entropy for tokens, or e.g. the
squared error summed over the features of a (bs, T, features) regression. Legend: ``#`` loss and
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

A stream that arrives in pieces goes through :class:`looplm.tbptt.TBPTTStream`,
which holds the segments, the inputs and the states between pieces;
:func:`truncated_bptt` is that stream fed once and flushed.

The caller may step the optimiser between updates: a kept graph saved copies of
the weights it read (:mod:`looplm.tbptt.frozen`), so its backward uses the
weights of the forward that built it, which is what "stored" means. With the
weights unchanged between updates, ``stored`` and ``recompute`` give the same
gradients; after a step they differ by that staleness only.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import Iterator

from torch import Tensor, nn

from looplm.state import State
from looplm.tbptt.common import Forward, LossFn, TBPTTStep
from looplm.tbptt.stream import TBPTTStream


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
    time_dim: int = 1,
) -> Iterator[TBPTTStep]:
    """Train ``model`` on a whole stream with TBPTT(k1, k2), yielding once per update.

    inputs, targets: tensors with the batch on dim 0 and time on ``time_dim``, of any
        dtype and shape: (bs, T) token ids, (bs, T, features) floats, ...; targets[:, t]
        is what the step at t is scored against. Nothing is cast, except integer ids
        narrower than int32 (a uint16 memmap), widened for the model one chunk at a time,
        and the default loss's targets, made int64.
    k1: steps between updates; k2: steps each update backpropagates through.
    state: the state entering position 0 (None for zeros), treated as a constant: any
        pytree of tensors (tensor, tuple, list, dict, nested; None leaves).
    loss_fn: ``loss_fn(out, targets) -> summed loss``; defaults to summed cross-entropy.
    mode: ``"stored"`` (forward once per step) or ``"recompute"`` (the reference).
    forward: ``forward(x, state) -> (out, state)`` in place of ``model(x, state)``, e.g.
        to hand activations to a loss with AR/TAR; ``model`` still names the parameters.
    time_dim: the dim of inputs and targets that is time (>= 1).

    Each yield (:class:`TBPTTStep`) comes after the update's gradients were added to
    the parameters' ``.grad`` (as ``backward()`` does): step the optimiser and zero
    the gradients between yields. Arguments are checked at the call, before the
    first yield. For a stream that arrives in pieces, use :class:`TBPTTStream`.
    """
    stream = TBPTTStream(model, k1, k2, loss_fn, mode, forward=forward, time_dim=time_dim)
    stream.reset(state)
    return chain(stream.feed(inputs, targets), stream.flush())
