"""TensorBoard event files of a training run (``looplm train --tensorboard``, or
``Learner(..., cbs=[TensorBoard(dir)])``), written with ``torch.utils.tensorboard``.

Per update: train loss, learning rate, momentum (beta1), gradient norm (before clipping).
Per epoch: train and valid loss, accuracy, perplexity, tokens/s. At the end: the run's
hyperparameters with its final metrics (TensorBoard's HParams tab compares runs).

Nothing is read back from the device per batch: the loss and the gradient norm of every
update stay device tensors until the epoch ends, then are read in one transfer and written.
The ``tensorboard`` package is optional: ``pip install -e ".[tensorboard]"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from looplm.callbacks import Callback
from looplm.errors import LooplmError

INSTALL = 'pip install -e ".[tensorboard]"'


def summary_writer(log_dir: str | Path):
    """A ``SummaryWriter`` into ``log_dir``, or a LooplmError saying how to install tensorboard."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise LooplmError(f"--tensorboard needs the tensorboard package: {INSTALL}") from None
    return SummaryWriter(str(log_dir))


class TensorBoard(Callback):
    """Log a fit to TensorBoard in ``log_dir``; ``hparams`` (numbers, strings, bools) go with
    the final metrics into the HParams table."""

    order = -5  # before GradientClip: the norm logged is the one the step would have had unclipped

    def __init__(self, log_dir: str | Path, hparams: dict[str, Any] | None = None):
        try:  # fail now, not after the first epoch, when tensorboard is missing
            import torch.utils.tensorboard  # noqa: F401
        except ImportError:
            raise LooplmError(f"--tensorboard needs the tensorboard package: {INSTALL}") from None
        self.log_dir = Path(log_dir)
        self.hparams = {k: v for k, v in (hparams or {}).items() if isinstance(v, (int, float, str, bool))}
        self.writer = None
        self._clear()

    def _clear(self) -> None:
        self.losses: list[torch.Tensor] = []
        self.norms: list[torch.Tensor] = []
        self.lrs: list[float] = []
        self.moms: list[float] = []

    def before_fit(self, learn) -> None:
        self.writer = summary_writer(self.log_dir)
        self._clear()

    def before_step(self, learn) -> None:
        grads = [p.grad.detach() for p in learn.model.parameters() if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])) if grads \
            else torch.zeros((), device=learn.device)
        self.norms.append(norm)
        self.losses.append(learn.loss_grad.detach().float())
        group = learn.opt.param_groups[0]
        self.lrs.append(float(group["lr"]))
        self.moms.append(float(group["betas"][0]))

    def after_epoch(self, learn) -> None:
        w, first = self.writer, learn.train_iter - len(self.losses)
        if self.losses:  # one transfer for the whole epoch
            losses, norms = torch.stack(self.losses).tolist(), torch.stack(self.norms).tolist()
            for i, (loss, norm, lr, mom) in enumerate(zip(losses, norms, self.lrs, self.moms)):
                step = first + i + 1
                w.add_scalar("train/loss_step", loss, step)
                w.add_scalar("train/grad_norm", norm, step)
                w.add_scalar("opt/lr", lr, step)
                w.add_scalar("opt/mom", mom, step)
        m, step = learn.history[-1], learn.train_iter
        w.add_scalar("train/loss", m.train_loss, step)
        w.add_scalar("valid/loss", m.valid_loss, step)
        w.add_scalar("valid/accuracy", m.accuracy, step)
        w.add_scalar("valid/perplexity", m.perplexity, step)
        tokens = learn.train_data.inputs.numel() * learn.dist.world_size
        w.add_scalar("speed/tokens_per_s", tokens / max(m.seconds, 1e-9), step)
        w.flush()
        self._clear()

    def after_fit(self, learn) -> None:
        if learn.history:
            m = learn.history[-1]
            self.writer.add_hparams(self.hparams, {"hparam/valid_loss": m.valid_loss, "hparam/accuracy": m.accuracy,
                                                   "hparam/perplexity": m.perplexity}, run_name=".")
        self.writer.close()
