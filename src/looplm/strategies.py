"""How an epoch's stream becomes updates: the learner's training strategies.

A strategy turns the training stream (``StreamBatches``: rows of the stream,
see :mod:`looplm.data.batching`) into a sequence of updates. It cuts the stream
and asks the learner, through the small :class:`Trainee` interface, for each
update's forward and backward pass; it yields each update's mean loss once its
gradients are in ``.grad``, and the learner then steps the optimiser.

- :class:`Chunks`: one update per batch, the state detached between batches
  (the chapter's truncated BPTT, k1 = k2 = sl).
- :class:`VariableChunks`: AWD-LSTM's random sequence lengths, the learning rate
  scaled by length / sl for that step.
- :class:`TBPTT`: TBPTT(k1, k2) over the whole row stream (``looplm.tbptt``).
- :class:`Windows`: overlapping stateless chunks, or burn-in then train.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ContextManager, Iterator, Protocol

import torch
from torch import Tensor, nn

from looplm.data.batching import StreamBatches
from looplm.errors import LooplmError
from looplm.state import State
from looplm.tbptt import Schedule, burn_in, overlapping_chunks, truncated_bptt


class Trainee(Protocol):
    """What a strategy may use of the learner (:class:`looplm.learner.Learner` is one)."""

    model: nn.Module
    epoch: int

    def update(self, x: Tensor, y: Tensor) -> Tensor:
        """One update's forward and backward from the carried state; its mean loss."""

    def begin_update(self) -> None:
        """An update starts (the callbacks' ``before_batch``: e.g. its learning rate)."""

    def carry(self, state: State) -> None:
        """The state the next update starts from."""

    def stream_hooks(self) -> tuple[Callable | None, Callable | None]:
        """``forward``/``loss_fn`` for :mod:`looplm.tbptt`, or (None, None) for its own."""

    def scaled_lr(self, factor: float) -> ContextManager[None]:
        """The learning rate times ``factor`` for the step taken inside the block."""


class Strategy:
    """``updates(learn, data, start)`` yields the mean loss of every update from
    update ``start`` of the epoch on; ``n_updates(data, epoch)`` counts them."""

    resumable_mid_epoch = True  # can an epoch restart at any update index?

    def n_updates(self, data: StreamBatches, epoch: int) -> int:
        raise NotImplementedError

    def updates(self, learn: Trainee, data: StreamBatches, start: int) -> Iterator[Tensor]:
        raise NotImplementedError


class Chunks(Strategy):
    """One update per batch of ``sl`` steps; state detached between batches."""

    def n_updates(self, data: StreamBatches, epoch: int) -> int:
        return len(data)

    def updates(self, learn: Trainee, data: StreamBatches, start: int) -> Iterator[Tensor]:
        for k in range(start, len(data)):
            yield learn.update(*data.batch(k))


@dataclass
class VariableChunks(Strategy):
    """AWD-LSTM's variable sequence length: each chunk is ``sl`` long with p=0.95, else
    ``sl/2``; then drawn from N(that, 5), at least 5 steps. The step's learning rate is
    scaled by length / sl and restored afterwards. The lengths come from one generator
    seeded by (seed, epoch), so every rank of a data-parallel job draws the same ones."""

    seed: int = 0
    std: float = 5.0
    minimum: int = 5
    bucket: int = 1  # round each length to a multiple of this: few shapes, few oneDNN kernels to build

    def lengths(self, data: StreamBatches, epoch: int) -> list[int]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        total, sl, out = data.inputs.shape[1], data.sl, []
        while sum(out) < total:
            base = sl if torch.rand((), generator=gen) < 0.95 else sl / 2
            length = max(self.minimum, int(base + self.std * torch.randn((), generator=gen)))
            if self.bucket > 1:
                length = max(self.bucket, round(length / self.bucket) * self.bucket)
            out.append(min(length, total - sum(out)))
        return out

    def n_updates(self, data: StreamBatches, epoch: int) -> int:
        return len(self.lengths(data, epoch))

    def updates(self, learn: Trainee, data: StreamBatches, start: int) -> Iterator[Tensor]:
        if data.layout != "every":
            raise LooplmError("variable sequence lengths need a model with a prediction at every step")
        lengths = self.lengths(data, learn.epoch)
        position = sum(lengths[:start])
        for length in lengths[start:]:
            x = data.inputs[:, position : position + length].long()  # int64 per chunk, not per stream
            y = data.targets[:, position : position + length].long()
            position += length
            loss = learn.update(x, y)
            with learn.scaled_lr(length / data.sl):
                yield loss


class _StreamStrategy(Strategy):
    """Strategies from :mod:`looplm.tbptt` that walk the whole row stream at once."""

    resumable_mid_epoch = False

    def _generator(self, learn: Trainee, data: StreamBatches):
        raise NotImplementedError

    def updates(self, learn: Trainee, data: StreamBatches, start: int) -> Iterator[Tensor]:
        if data.layout != "every":
            raise LooplmError("TBPTT strategies need a model with a prediction at every step")
        if start:
            raise LooplmError("this strategy cannot resume in the middle of an epoch")
        steps = self._generator(learn, data)
        while True:
            learn.begin_update()
            step = next(steps, None)
            if step is None:
                return
            learn.carry(step.state)
            yield step.loss


@dataclass
class TBPTT(_StreamStrategy):
    """TBPTT(k1, k2) (see :func:`looplm.tbptt.truncated_bptt`)."""

    k1: int
    k2: int
    mode: str = "stored"

    def n_updates(self, data: StreamBatches, epoch: int) -> int:
        return Schedule(data.inputs.shape[1], self.k1, self.k2).n_updates

    def _generator(self, learn: Trainee, data: StreamBatches):
        forward, loss_fn = learn.stream_hooks()
        return truncated_bptt(learn.model, data.inputs, data.targets, self.k1, self.k2, state=None,
                              loss_fn=loss_fn, mode=self.mode, forward=forward)


@dataclass
class Windows(_StreamStrategy):
    """Stateless windows of ``k`` steps: ``overlap`` steps shared with the previous
    window, or ``burn`` steps run without gradient to build the state."""

    k: int
    overlap: int = 0
    burn: int = 0

    def n_updates(self, data: StreamBatches, epoch: int) -> int:
        shared = self.burn or self.overlap
        return len(range(0, max(data.inputs.shape[1] - shared, 1), self.k - shared))

    def _generator(self, learn: Trainee, data: StreamBatches):
        forward, loss_fn = learn.stream_hooks()
        if self.burn:
            return burn_in(learn.model, data.inputs, data.targets, self.k, self.burn, loss_fn, forward=forward)
        return overlapping_chunks(learn.model, data.inputs, data.targets, self.k, self.overlap, loss_fn,
                                  forward=forward)
