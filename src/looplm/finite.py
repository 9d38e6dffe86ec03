"""Stop training when the loss turns non-finite, without a host sync per batch.

Every update's loss goes into two tensors on the device::

    alive  = alive & isfinite(loss)      # still finite since the epoch (or resume) started?
    n_ok  += alive                       # how many updates were finite before the first bad one

Reading them costs one device sync, so they are read only where training syncs anyway (the
end of an epoch, a checkpoint) and every ``check_every`` updates, so a run that diverges
early in a long epoch stops within that many updates rather than at the epoch's end. The
batch a message names is exact all the same: ``start + n_ok``. Checkpoints are taken only
after a check, so the one on disk is always the last finite one.
"""

from __future__ import annotations

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
    """The two flags above for one pass over the training stream."""

    def __init__(self, device: torch.device):
        self.device = device
        self.reset(0)

    def reset(self, start_batch: int) -> None:
        self.start = start_batch
        self.alive = torch.ones((), dtype=torch.bool, device=self.device)
        self.n_ok = torch.zeros((), dtype=torch.int64, device=self.device)

    def observe(self, value: Tensor) -> None:
        """Fold one update's loss (or gradient norm) in: no sync."""
        self.alive &= torch.isfinite(value.detach()).all()
        self.n_ok += self.alive

    def check(self, epoch: int, dist) -> None:
        """Raise :class:`NonFiniteTraining` naming the first bad batch (one sync; ``dist``, the
        learner's :class:`looplm.distributed.Distributed`: every rank stops when any saw one)."""
        if dist.any(not bool(self.alive)):
            raise NonFiniteTraining(epoch, self.start + int(self.n_ok) if not bool(self.alive) else None)


def all_finite(module: nn.Module) -> bool:
    """Are all of ``module``'s parameters and buffers finite? (one sync)"""
    tensors = [t for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()]
    return not tensors or bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


def check_weights(module: nn.Module, epoch: int) -> None:
    if not all_finite(module):
        raise NonFiniteTraining(epoch, None, "model's weights")
