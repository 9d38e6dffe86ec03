"""How an epoch's stream becomes updates: the learner's training strategies.

A strategy turns the training stream (``StreamBatches``: rows of the stream,
see :mod:`looplm.data.batching`) into a sequence of updates. It runs the
forward and backward passes (calling the learner's ``before_batch`` and
``after_loss`` events) and yields each update's mean loss once its gradients
are in ``.grad``; the learner then steps the optimiser.

- :class:`Chunks`: one update per batch, the state detached between batches
  (the chapter's truncated BPTT, k1 = k2 = sl).
- :class:`VariableChunks`: AWD-LSTM's random sequence lengths, the learning rate
  scaled by length / sl for that step.
- :class:`TBPTT`: TBPTT(k1, k2) over the whole row stream (``looplm.tbptt``).
- :class:`Windows`: overlapping stateless chunks, or burn-in then train.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import Tensor

from looplm.data.batching import StreamBatches
from looplm.errors import LooplmError
from looplm.state import detach_state
from looplm.tbptt import Schedule, burn_in, overlapping_chunks, summed_cross_entropy, truncated_bptt


class Strategy:
    """``updates(learn, data, start)`` yields the mean loss of every update from
    update ``start`` of the epoch on; ``n_updates(data, epoch)`` counts them."""

    resumable_mid_epoch = True  # can an epoch restart at any update index?

    def n_updates(self, data: StreamBatches, epoch: int) -> int:
        raise NotImplementedError

    def updates(self, learn: Any, data: StreamBatches, start: int) -> Iterator[Tensor]:
        raise NotImplementedError


def _one_update(learn: Any, x: Tensor, y: Tensor) -> Tensor:
    """Forward a chunk from the carried state, add the callbacks' terms, backward."""
    learn.event("before_batch")
    if learn.needs_activations:
        logits, state, learn.activations = learn.model(x, learn.state, return_activations=True)
    else:
        logits, state = learn.model(x, learn.state)
    loss = learn.loss_fn(logits, y)
    learn.loss_grad = loss
    learn.event("after_loss")
    learn.loss_grad.backward()
    learn.state = detach_state(state)
    return loss.detach()


class Chunks(Strategy):
    """One update per batch of ``sl`` steps; state detached between batches."""

    def n_updates(self, data: StreamBatches, epoch: int) -> int:
        return len(data)

    def updates(self, learn: Any, data: StreamBatches, start: int) -> Iterator[Tensor]:
        for k in range(start, len(data)):
            yield _one_update(learn, *data.batch(k))


@dataclass
class VariableChunks(Strategy):
    """AWD-LSTM's variable sequence length: each chunk is ``sl`` long with p=0.95, else
    ``sl/2``; then drawn from N(that, 5), at least 5 steps. The step's learning rate is
    scaled by length / sl and restored afterwards. The lengths come from one generator
    seeded by (seed, epoch), so every rank of a data-parallel job draws the same ones."""

    seed: int = 0
    std: float = 5.0
    minimum: int = 5

    def lengths(self, data: StreamBatches, epoch: int) -> list[int]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        total, sl, out = data.inputs.shape[1], data.sl, []
        while sum(out) < total:
            base = sl if torch.rand((), generator=gen) < 0.95 else sl / 2
            length = max(self.minimum, int(base + self.std * torch.randn((), generator=gen)))
            out.append(min(length, total - sum(out)))
        return out

    def n_updates(self, data: StreamBatches, epoch: int) -> int:
        return len(self.lengths(data, epoch))

    def updates(self, learn: Any, data: StreamBatches, start: int) -> Iterator[Tensor]:
        if data.layout != "every":
            raise LooplmError("variable sequence lengths need a model with a prediction at every step")
        lengths = self.lengths(data, learn.epoch)
        position = sum(lengths[:start])
        for length in lengths[start:]:
            x = data.inputs[:, position : position + length].long()  # int64 per chunk, not per stream
            y = data.targets[:, position : position + length].long()
            position += length
            loss = _one_update(learn, x, y)
            saved = [group["lr"] for group in learn.opt.param_groups]
            for group in learn.opt.param_groups:
                group["lr"] = group["lr"] * length / data.sl
            yield loss
            for group, lr in zip(learn.opt.param_groups, saved):
                group["lr"] = lr


class _StreamStrategy(Strategy):
    """Strategies from :mod:`looplm.tbptt` that walk the whole row stream at once."""

    resumable_mid_epoch = False

    def _generator(self, learn: Any, data: StreamBatches):
        raise NotImplementedError

    def updates(self, learn: Any, data: StreamBatches, start: int) -> Iterator[Tensor]:
        if data.layout != "every":
            raise LooplmError("TBPTT strategies need a model with a prediction at every step")
        if start:
            raise LooplmError("this strategy cannot resume in the middle of an epoch")
        steps = self._generator(learn, data)
        while True:
            learn.event("before_batch")
            step = next(steps, None)
            if step is None:
                return
            learn.state = step.state
            yield step.loss


def _forward_and_loss(learn: Any):
    """``forward``/``loss_fn`` for looplm.tbptt that keep AR/TAR when the learner uses them:
    the callbacks' terms are means, so they are weighted by the positions counted."""
    if not learn.needs_activations:
        return None, None

    def forward(x, state):
        logits, state, activations = learn.model(x, state, return_activations=True)
        return (logits, activations), state

    def loss_fn(out, targets):
        logits, learn.activations = out
        summed = summed_cross_entropy(logits, targets)
        learn.loss_grad = summed.new_zeros(())
        learn.event("after_loss")
        return summed + learn.loss_grad * targets.numel()

    return forward, loss_fn


@dataclass
class TBPTT(_StreamStrategy):
    """TBPTT(k1, k2) (see :func:`looplm.tbptt.truncated_bptt`)."""

    k1: int
    k2: int
    mode: str = "stored"

    def n_updates(self, data: StreamBatches, epoch: int) -> int:
        return Schedule(data.inputs.shape[1], self.k1, self.k2).n_updates

    def _generator(self, learn: Any, data: StreamBatches):
        forward, loss_fn = _forward_and_loss(learn)
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

    def _generator(self, learn: Any, data: StreamBatches):
        forward, loss_fn = _forward_and_loss(learn)
        if self.burn:
            return burn_in(learn.model, data.inputs, data.targets, self.k, self.burn, loss_fn, forward=forward)
        return overlapping_chunks(learn.model, data.inputs, data.targets, self.k, self.overlap, loss_fn,
                                  forward=forward)
