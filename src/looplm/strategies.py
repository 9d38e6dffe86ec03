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
from looplm.tbptt import Schedule, TBPTTStream, burn_in, overlapping_chunks
from looplm.tbptt.common import TBPTTStep


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
    update ``start`` of the epoch on; ``n_updates(data, epoch)`` counts them.

    A strategy whose walk through the epoch holds more than the update index (TBPTT's
    windows reach back before it) gives that as ``state_dict()`` for a checkpoint taken
    between two updates, and takes it back with ``restore`` before the epoch resumes."""

    def n_updates(self, data: StreamBatches, epoch: int) -> int:
        raise NotImplementedError

    def updates(self, learn: Trainee, data: StreamBatches, start: int) -> Iterator[Tensor]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Tensor | int | str]:
        """Where the epoch's walk is, beyond the update index (empty: nothing more)."""
        return {}

    def row_dims(self, sd: dict[str, Tensor | int | str]) -> dict[str, int]:
        """The batch dim of each tensor of ``sd`` that holds rows of the batch (a job's ranks each
        hold their share of them: the checkpoint gathers them and a resumed rank takes its own)."""
        return {}

    def restore(self, learn: Trainee, sd: dict[str, Tensor | int | str]) -> None:
        """Continue from :meth:`state_dict`'s output (checked here, before training resumes)."""
        if sd:
            raise LooplmError(f"the checkpoint holds a walk state ({', '.join(sorted(sd)[:3])}, ...) that "
                              f"{type(self).__name__} does not keep: it was written by another training strategy")


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
    """Strategies from :mod:`looplm.tbptt` that walk the whole row stream."""

    def _generator(self, learn: Trainee, data: StreamBatches, start: int):
        raise NotImplementedError

    def updates(self, learn: Trainee, data: StreamBatches, start: int) -> Iterator[Tensor]:
        if data.layout != "every":
            raise LooplmError("TBPTT strategies need a model with a prediction at every step")
        steps = self._generator(learn, data, start)
        while True:
            learn.begin_update()
            step = next(steps, None)
            if step is None:
                return
            learn.carry(step.state)
            yield step.loss


@dataclass
class TBPTT(_StreamStrategy):
    """TBPTT(k1, k2) (see :func:`looplm.tbptt.truncated_bptt`), fed to a
    :class:`looplm.tbptt.TBPTTStream` k1 steps at a time, so that between two updates the
    stream holds at most k1 + k2 steps and its state dict is small enough for a checkpoint.

    Resuming mid-epoch restores the stream (the states at the next windows' starts and their
    inputs): ``recompute`` then continues exactly as if never stopped; ``stored`` re-runs the
    first window it needs with the current weights, where the uninterrupted run reused the
    graph built with earlier weights, so it differs by that one window's staleness (and, with
    dropout, by the masks the re-run draws)."""

    k1: int
    k2: int
    mode: str = "stored"

    def __post_init__(self) -> None:
        self._stream: TBPTTStream | None = None  # this epoch's, while it runs
        self._resumed: TBPTTStream | None = None  # restored from a checkpoint, for the next epoch start

    def n_updates(self, data: StreamBatches, epoch: int) -> int:
        return Schedule(data.inputs.shape[1], self.k1, self.k2).n_updates

    def _new_stream(self, learn: Trainee) -> TBPTTStream:
        forward, loss_fn = learn.stream_hooks()
        return TBPTTStream(learn.model, self.k1, self.k2, loss_fn, self.mode, forward=forward)

    def _generator(self, learn: Trainee, data: StreamBatches, start: int):
        stream = self._resumed if start else self._new_stream(learn)
        self._resumed = None
        if stream is None or stream.position != min(start * self.k1, data.inputs.shape[1]):
            raise LooplmError(f"cannot resume TBPTT at update {start}: the checkpoint's stream is not there "
                              "(a checkpoint of another run or setting); resume is not possible, retrain")
        self._stream = stream
        return self._walk(stream, data)

    def _walk(self, stream: TBPTTStream, data: StreamBatches) -> Iterator[TBPTTStep]:
        for b in range(stream.position, data.inputs.shape[1], self.k1):
            yield from stream.feed(data.inputs[:, b : b + self.k1], data.targets[:, b : b + self.k1])
        yield from stream.flush()
        self._stream = None

    def state_dict(self) -> dict[str, Tensor | int | str]:
        return {} if self._stream is None else self._stream.state_dict()

    def row_dims(self, sd: dict[str, Tensor | int | str]) -> dict[str, int]:
        # the inputs and targets: (bs, steps); the states at the windows' starts: rows on dim 1, as
        # the learner's carried state (n_layers, bs, n_hidden); "anchors" lists positions
        return {k: 0 if k.startswith("history.") else 1 for k, v in sd.items()
                if isinstance(v, Tensor) and k != "anchors"}

    def restore(self, learn: Trainee, sd: dict[str, Tensor | int | str]) -> None:
        if not sd:
            return
        stream = self._new_stream(learn)
        try:
            stream.load_state_dict(sd)
        except (LooplmError, KeyError, ValueError, TypeError, IndexError, RuntimeError) as err:
            raise LooplmError(f"the checkpoint's TBPTT stream is damaged ({type(err).__name__}: {err}); "
                              "resume is not possible, retrain") from None
        self._resumed = stream


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

    def _generator(self, learn: Trainee, data: StreamBatches, start: int):
        forward, loss_fn = learn.stream_hooks()  # windows start from fresh states: skipping ``start`` is exact
        if self.burn:
            return burn_in(learn.model, data.inputs, data.targets, self.k, self.burn, loss_fn, forward=forward,
                           first=start)
        return overlapping_chunks(learn.model, data.inputs, data.targets, self.k, self.overlap, loss_fn,
                                  forward=forward, first=start)
