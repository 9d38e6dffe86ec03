"""TBPTT(k1, k2) over a stream that arrives in pieces: :class:`TBPTTStream`.

The strides and windows are those of :func:`looplm.tbptt.truncated_bptt` (its
docstring draws them), counted from the stream's start; pieces may cut them
anywhere, and a window reaches back across as many pieces as it needs::

    pieces      |--3--|1|----5----|--2--|...      feed(), feed(), ...
    position     0 1 2 3 4 5 6 7 8 9 10 11
    k1 = 4      [ stride 0 ][ stride 1  ][ stride 2 ...     an update when a stride is complete
    k2 = 6               the update at 8 backpropagates through [2, 8): pieces 1 to 3

Each stride is run when it is complete (in ``feed``, or in ``flush`` for a last,
shorter one), so feeding a stream in pieces runs the same steps through the same
windows as feeding it at once. What the stream keeps between pieces:

- the inputs and targets from the newest window's start on (views of the pieces);
- ``anchors``: detached states at the positions where a later window may start;
- in ``stored`` mode, the chain of segments (graphs) that the next window covers.

A window whose graph was not kept is re-run from an anchor with the current
weights, as ``recompute`` does. That happens in ``stored`` mode only when the
stream ends inside a stride and the last piece was too short to plan the last
window's start, and after :meth:`TBPTTStream.load_state_dict` (graphs are not
saved). With the weights unchanged in between it gives the same gradients.
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
from looplm.state import State, detach_state, map_state, state_from_flat, state_leaves, state_to_flat
from looplm.tbptt.common import (
    Forward,
    LossFn,
    TBPTTStep,
    check_count,
    check_stream,
    checked_state,
    no_grad_loss,
    run_chunk,
)
from looplm.losses import summed_cross_entropy
from looplm.tbptt.frozen import frozen_weights

MODES = ("stored", "recompute")


class _History:
    """The inputs and targets of steps [start, end), kept as the pieces they came in."""

    def __init__(self, time_dim: int, start: int = 0):
        self.time_dim, self.start, self.end = time_dim, start, start
        self.pieces: deque[tuple[int, Tensor, Tensor]] = deque()  # (first position, x, y)

    def append(self, x: Tensor, y: Tensor) -> None:
        self.pieces.append((self.end, x, y))
        self.end += x.shape[self.time_dim]

    def slice(self, b: int, e: int) -> tuple[Tensor, Tensor]:
        """Inputs and targets of the steps [b, e): views, or one copy where pieces meet."""
        d, xs, ys = self.time_dim, [], []
        for p, x, y in self.pieces:
            lo, hi = max(b, p), min(e, p + x.shape[d])
            if lo < hi:
                xs.append(x.narrow(d, lo - p, hi - lo))
                ys.append(y.narrow(d, lo - p, hi - lo))
        return (xs[0], ys[0]) if len(xs) == 1 else (torch.cat(xs, d), torch.cat(ys, d))

    def trim(self, b: int) -> None:
        """Forget the steps before b."""
        while self.pieces and self.pieces[0][0] + self.pieces[0][1].shape[self.time_dim] <= b:
            self.pieces.popleft()
        self.start = b


@dataclass
class _Segment:
    """A run of steps whose graph is kept for the windows that cover it."""

    start: int
    inp: State  # the value of its input state
    leaves: State  # that state as leaves requiring grad, or None: the gradient stops here
    out: State  # its output state, attached to the segment's graph
    loss: Tensor | None  # its summed loss, until the update of its stride backpropagates it


def _leaves(state: State) -> State:
    """A copy of ``state`` whose floating-point tensors require grad; integer leaves (a step
    counter) stay constants."""
    return map_state(state, lambda t: t.detach().requires_grad_(t.is_floating_point() or t.is_complex()))


def _layout(x: Tensor, d: int) -> tuple:
    return (*x.shape[:d], *x.shape[d + 1:]), x.dtype, x.device


class TBPTTStream:
    """TBPTT(k1, k2) on a stream fed in pieces; ``truncated_bptt`` is one piece and a flush.

    model: names the parameters (and runs the chunks unless ``forward`` is given).
    k1: steps between updates; k2: steps each update backpropagates through.
    loss_fn: ``loss_fn(out, targets) -> summed loss``; defaults to summed cross-entropy.
    mode: ``"stored"`` (forward once per step) or ``"recompute"`` (re-run each window).
    forward: ``forward(x, state) -> (out, state)`` in place of ``model(x, state)``.
    time_dim: the time dim of inputs and targets (the batch is dim 0).

    ::

        stream = TBPTTStream(model, k1=1, k2=32, loss_fn=mse)
        for x, y in pieces:                      # x (bs, n, features), any n >= 1
            for step in stream.feed(x, y):       # the updates this piece completes
                opt.step(); opt.zero_grad()
        for step in stream.flush():              # the last, shorter stride
            opt.step(); opt.zero_grad()

    Graphs are kept for at most k2 steps and inputs for at most k1 + k2, whatever
    the stream's length. The generators do the work as they are iterated.
    """

    def __init__(self, model: nn.Module, k1: int, k2: int, loss_fn: LossFn | None = None, mode: str = "stored",
                 *, forward: Forward | None = None, time_dim: int = 1):
        check_count("k1", k1)
        check_count("k2", k2)
        check_count("time_dim", time_dim)
        if mode not in MODES:
            raise LooplmError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.k1, self.k2, self.mode, self.time_dim = k1, k2, mode, time_dim
        self._forward = model if forward is None else forward
        self._loss_fn = loss_fn or summed_cross_entropy
        self._params = list(model.parameters())
        self._begin(None)

    def _begin(self, state: State) -> None:
        """Start a stream at position 0 from ``state`` (detached)."""
        self._pos = self._done = 0  # steps fed; steps whose update has run
        self._end_state = state  # the state at position _done
        self._anchors: dict[int, State] = {0: state}
        self._chain: deque[_Segment] = deque()
        self._history = _History(self.time_dim)
        self._layout: tuple | None = None
        self._pending: tuple[int, State] | None = None  # (position, state) once computed

    @property
    def state(self) -> State:
        """The detached state after the last step fed. Steps fed since the last update
        are run for it without gradient (once; the update runs them again)."""
        if self._pos == self._done:
            return self._end_state
        if self._pending is None or self._pending[0] != self._pos:
            with torch.no_grad():
                _, h = run_chunk(self._forward, self._history.slice(self._done, self._pos)[0], self._end_state)
            self._pending = (self._pos, detach_state(h))
        return self._pending[1]

    @property
    def position(self) -> int:
        """Steps fed since the stream began (or since the last flush or reset)."""
        return self._pos

    @property
    def kept(self) -> tuple[int, int]:
        """(steps of inputs, steps of graph) the stream holds now: at most k1 + k2 plus the
        newest piece, and k2 - 1 between updates, however long the stream."""
        graph = self._done - self._chain[0].start if self._chain else 0
        return self._history.end - self._history.start, graph

    def feed(self, inputs: Tensor, targets: Tensor) -> Iterator[TBPTTStep]:
        """Append a piece (batch on dim 0, time on ``time_dim``, n >= 1 steps); return a
        generator over the updates it completes. The piece is checked and recorded at the
        call; updates left unconsumed run at the next ``feed`` or ``flush``."""
        self._bs, _ = check_stream(inputs, targets, self.time_dim)
        layout = (_layout(inputs, self.time_dim), _layout(targets, self.time_dim))
        if self._layout is not None and layout != self._layout:
            raise LooplmError(f"a piece must continue the stream: inputs and targets of (shape without time, "
                              f"dtype, device) {self._layout}, got {layout}")
        self._layout = layout
        self._history.append(inputs, targets)
        self._pos = self._history.end
        return self._updates()

    def _updates(self) -> Iterator[TBPTTStep]:
        while self._pos - self._done >= self.k1:
            yield self._update(self._done + self.k1, final=False)

    def flush(self) -> Iterator[TBPTTStep]:
        """End the stream: a generator over the updates still due, the last shorter
        stride's included. What is fed next starts a new stream from ``state``."""
        yield from self._updates()
        if self._pos > self._done:
            yield self._update(self._pos, final=True)
        self._begin(self._end_state)

    def reset(self, state: State = None) -> None:
        """Start a new stream (an episode, a document) from ``state`` (None: zeros). No
        window reaches across a reset."""
        if self._pos > self._done:
            raise LooplmError(f"reset() would drop the {self._pos - self._done} steps fed since the last "
                              "update: iterate flush() first")
        self._begin(checked_state(state))

    def _later_starts(self, t: int) -> list[int]:
        """Where the windows of the updates after the one ending at t may start, before t:
        the next full strides' t + m*k1 - k2, and q - k2 should the stream end at q, the
        end of what was fed, inside a stride. Cut there, and kept, in stored mode."""
        q, k1, k2 = self._pos, self.k1, self.k2
        starts = set(range(t + k1 - k2, t, k1)) | ({q - k2} if q > t and q % k1 and q - k2 < t else set())
        return sorted({max(0, f) for f in starts})

    def _update(self, t: int, final: bool) -> TBPTTStep:
        """The update of the stride [done, t); ``final``: the stream ends at t."""
        s, w, stored = self._done, max(0, t - self.k2), self.mode == "stored"
        later = [] if final else self._later_starts(t)
        # anchors: states a later window can be re-run from (w, the next windows' starts, t)
        nxt = {max(0, t + self.k1 - self.k2), max(0, self._pos - self.k2)}
        marks = {w, t} | (nxt & set(later))
        points = later if stored else sorted(marks)
        keep_from = min(later, default=t) if stored else t
        # graphs kept past this update must not hold weights that step() will modify
        with frozen_weights(self._params) if keep_from < t else nullcontext():
            h = self._end_state
            if w < s and not (stored and any(seg.start == w for seg in self._chain)):
                h = self._rebuild(w, s, points)
            untrained = self._run_stride(s, t, w, points, h)
        n = self._bs * (t - s)
        trained = self._backward(w, n, keep_from)
        states = {seg.start: seg.inp for seg in self._chain} | {t: self._end_state}
        self._anchors = {m: states[m] for m in marks if m in states}
        while self._chain and self._chain[0].start < keep_from:
            self._chain.popleft()
        self._done = t
        self._history.trim(min(self._anchors))
        return TBPTTStep((trained + untrained) / n, self._end_state, n)

    def _segment(self, b: int, e: int, h: State, constant: bool, with_loss: bool) -> State:
        """Run [b, e) with gradient from ``h`` and append it to the chain; its input is a
        constant when ``constant`` (a window starts at b), else leaves for the gradient."""
        x, y = self._history.slice(b, e)
        inp = detach_state(h)
        leaves = None if constant else _leaves(inp)
        out, h = run_chunk(self._forward, x, inp if leaves is None else leaves)
        self._chain.append(_Segment(b, inp, leaves, h, self._loss_fn(out, y) if with_loss else None))
        return h

    def _rebuild(self, w: int, s: int, points: list[int]) -> State:
        """Re-run [w, s) from the nearest anchor as the chain of this window; the state at s."""
        self._chain.clear()
        a = max(p for p in self._anchors if p <= w)
        h = self._anchors[a]
        if a < w:
            with torch.no_grad():
                _, h = run_chunk(self._forward, self._history.slice(a, w)[0], h)
        for b, e in pairwise(sorted({w, s} | {p for p in points if w < p < s})):
            h = self._segment(b, e, h, constant=b == w, with_loss=False)
        return h

    def _run_stride(self, s: int, t: int, w: int, points: list[int], h: State) -> Tensor:
        """Run the stride [s, t): no gradient before w, segments from w on. Returns the
        summed loss of the steps before w."""
        untrained = torch.zeros(())
        for b, e in pairwise(sorted({s, t} | {p for p in (w, *points) if s < p < t})):
            if b < w:
                loss, h = no_grad_loss(self._forward, self._loss_fn, *self._history.slice(b, e), h)
                untrained = untrained.to(loss) + loss
            else:
                h = self._segment(b, e, h, constant=b == w, with_loss=True)
        self._end_state = detach_state(h)
        return untrained

    def _backward(self, w: int, n: int, keep_from: int) -> Tensor:
        """Backpropagate the stride's losses / n through the chain, newest segment first,
        down to the window's start w; return their detached sum.

        The gradient reaching a segment's leaves becomes the gradient of the previous
        segment's output state. Graphs of segments from ``keep_from`` on are kept.
        """
        grads: list[Tensor | None] = []
        trained = torch.zeros(())
        for seg in reversed(self._chain):
            roots: list[Tensor] = []
            seeds: list[Tensor | None] = []
            if seg.loss is not None:
                roots.append(seg.loss / n)
                seeds.append(None)
                trained = trained.to(seg.loss) + seg.loss.detach()
                seg.loss = None
            for out, g in zip(state_leaves(seg.out), grads):
                if g is not None and out.requires_grad:
                    roots.append(out)
                    seeds.append(g)
            if roots:
                torch.autograd.backward(roots, seeds, retain_graph=seg.start >= keep_from)
            if seg.start <= w:
                break
            grads = [None if leaf is None else leaf.grad for leaf in state_leaves(seg.leaves)]
            for leaf in state_leaves(seg.leaves):
                if leaf is not None:
                    leaf.grad = None
        return trained

    def state_dict(self) -> dict[str, Tensor | int | str]:
        """Where the stream is, as plain data: ints, tensors (copies) and JSON strings (state
        structures), e.g. for safetensors plus JSON. No graphs: after
        :meth:`load_state_dict`, stored mode re-runs the first window it needs."""
        h = self._history
        sd: dict[str, Tensor | int | str] = {"k1": self.k1, "k2": self.k2, "time_dim": self.time_dim,
                                            "pos": self._pos, "done": self._done, "history.start": h.start}
        if h.end > h.start:
            x, y = h.slice(h.start, h.end)
            sd["history.inputs"], sd["history.targets"] = x, y
        sd.update(state_to_flat(self._end_state, "end_state"))
        sd["anchors"] = torch.tensor(sorted(self._anchors), dtype=torch.int64)
        for p, state in self._anchors.items():
            sd.update(state_to_flat(state, f"anchor.{p}"))
        # copies: anchors may share tensors, which safetensors refuses to save
        return {k: v.clone() if isinstance(v, Tensor) else v for k, v in sd.items()}

    def load_state_dict(self, sd: dict[str, Tensor | int | str]) -> None:
        """Continue the stream that :meth:`state_dict` described (same k1, k2, time_dim)."""
        saved = tuple(int(sd[k]) for k in ("k1", "k2", "time_dim"))
        if saved != (self.k1, self.k2, self.time_dim):
            raise LooplmError(f"this stream has (k1, k2, time_dim) = {(self.k1, self.k2, self.time_dim)}, "
                              f"the saved one {saved}: build the stream with the saved settings")
        pos, done, start = int(sd["pos"]), int(sd["done"]), int(sd["history.start"])
        anchors = {p: state_from_flat(sd, f"anchor.{p}") for p in map(int, sd["anchors"].tolist())}
        x, y = sd.get("history.inputs"), sd.get("history.targets")
        held = 0 if x is None else x.shape[self.time_dim]
        if not (0 <= start <= done <= pos and anchors and start <= min(anchors) and max(anchors) <= pos):
            raise LooplmError(f"the saved stream is inconsistent: history from {start}, updates done to {done}, "
                              f"fed to {pos}, anchors at {sorted(anchors)[:8]}")
        if held != pos - start or (x is None) != (y is None) or (x is not None and (
                x.dim() <= self.time_dim or y.dim() <= self.time_dim or x.shape[:self.time_dim + 1] != y.shape[:self.time_dim + 1])):
            raise LooplmError(f"the saved stream's inputs and targets do not hold its steps {start} to {pos}")
        self._begin(state_from_flat(sd, "end_state"))
        self._pos, self._done = pos, done
        self._history = _History(self.time_dim, start)
        if x is not None:
            self._history.append(x, y)
            self._bs = x.shape[0]
            self._layout = (_layout(x, self.time_dim), _layout(y, self.time_dim))
        self._anchors = anchors
