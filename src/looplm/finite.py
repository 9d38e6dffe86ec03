"""Stop training when the loss turns non-finite, without a host sync per batch.

Every update hands its loss (and, when clipping, its gradient norm) to a
:class:`FiniteWatch`, which copies it into a buffer on the device and notes the batch::

    values  = [loss, norm, loss, norm, ...]          # one small copy, no sync
    batches = [   3,    3,    4,    4, ...]          # on the host

Reading them costs one device sync (``isfinite`` of the buffer), so they are read only where
training syncs anyway (the end of an epoch, a checkpoint) and every ``check_every`` updates,
so a run that diverges early in a long epoch stops within that many updates rather than at
the epoch's end. The batch a message names is exact all the same: the first value that is not
finite says which. Checkpoints are taken only after a check, so the one on disk is always the
last finite one. (One copy rather than folding each value into a flag on the device: a 0-d
``isfinite`` is several small ops, ~20 us an update, a tenth of a small model's step. And a
buffer rather than a list of the 0-d tensors themselves: dozens of small tensors kept alive
between the big ones of each update stop the C allocator from reusing the big blocks, and a
word-level LSTM's process grew by 25 MB an update, to 2.3 GB, page-faulting all the way.)
"""

from __future__ import annotations

import bisect
import itertools

import torch
from torch import Tensor, nn

CHECK_EVERY = 64  # updates between two reads of the flag: one sync per 64 updates is noise


class NonFiniteTraining(Exception):
    """The loss (or the weights) turned non-finite: training stopped, nothing of it was saved
    (the CLI's exit code 3)."""

    def __init__(self, epoch: int, batch: int | None, what: str = "training loss"):
        where = f"epoch {epoch}, batch {batch}" if batch is not None else f"epoch {epoch}"
        super().__init__(f"the {what} became non-finite (nan or inf) at {where}: training stopped; "
                         "try a lower --lr, or --clip 1")
        self.epoch, self.batch = epoch, batch


class FiniteWatch:
    """The values observed since the last check, for one pass over the training stream."""

    def __init__(self, device: torch.device):
        self.device = device
        self.buffer = torch.empty(4 * CHECK_EVERY, dtype=torch.float64, device=device)
        self.reset()

    def reset(self) -> None:
        self.used = 0
        self.batches: list[tuple[int, int]] = []  # (batch, number of values) per observation

    def observe(self, value: Tensor, batch: int) -> None:
        """Keep update ``batch``'s loss (or gradient norm) for the next check: one copy, no sync."""
        n = value.numel()
        if self.used + n > len(self.buffer):  # rare: a long stretch between two checks
            grown = self.buffer.new_empty(2 * (self.used + n))
            grown[: self.used] = self.buffer[: self.used]
            self.buffer = grown
        self.buffer[self.used : self.used + n].copy_(value.detach().reshape(-1))
        self.used += n
        self.batches.append((batch, n))

    def check(self, epoch: int, dist) -> None:
        """Raise :class:`NonFiniteTraining` naming the first bad batch (one sync; ``dist``, the
        learner's :class:`looplm.distributed.Distributed`: every rank stops when any saw one)."""
        bad = self.first_bad()
        self.reset()
        if dist.any(bad is not None):
            raise NonFiniteTraining(epoch, bad)

    def first_bad(self) -> int | None:
        """The batch of the first pending value with a nan or inf in it, or None (one sync)."""
        if not self.used:
            return None
        finite = torch.isfinite(self.buffer[: self.used])  # one op for all of them
        if bool(finite.all()):
            return None
        first = int((~finite).nonzero()[0])
        ends = list(itertools.accumulate(n for _, n in self.batches))
        return self.batches[bisect.bisect_right(ends, first)][0]


def all_finite(module: nn.Module) -> bool:
    """Are all of ``module``'s parameters and buffers finite? (one sync)"""
    tensors = [t for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()]
    return not tensors or bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


def check_weights(module: nn.Module, epoch: int) -> None:
    if not all_finite(module):
        raise NonFiniteTraining(epoch, None, "model's weights")
