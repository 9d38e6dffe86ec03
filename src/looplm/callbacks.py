"""Callbacks: the pieces of training that are not the loop itself.

A callback overrides any of the events below; the learner calls them in
``order``. They read and write the learner's public attributes (``state``,
``loss_grad``, ``activations``, ``opt``, ...), the way fastai's callbacks do.

    before_fit
      before_epoch
        before_train
          before_batch -> forward -> after_loss -> backward -> before_step -> step -> after_batch
        before_validate
      after_epoch
    after_fit
"""

from __future__ import annotations

from typing import Any

import torch

from looplm.schedule import OneCycle

EVENTS = (
    "before_fit", "before_epoch", "before_train", "before_batch", "after_loss",
    "before_step", "after_batch", "before_validate", "after_epoch", "after_fit",
)


class CancelFit(Exception):
    """Raised by a callback to end training early (the LR finder does when the loss diverges)."""


class Callback:
    order = 0
    needs_activations = False  # ask the model for (raw, dropped) activations while training


class ResetState(Callback):
    """Start every pass over a stream from a zero state (fastai's ``ModelResetter``):
    the train rows restart at the stream's beginning each epoch, and validation
    reads other rows than training."""

    def before_train(self, learn: Any) -> None:
        learn.state = None

    def before_validate(self, learn: Any) -> None:
        learn.state = None


class ARTAR(Callback):
    """Activation regularisation (alpha: the dropped output's mean square) and
    temporal activation regularisation (beta: the mean square of the raw output's
    step-to-step change), added to the training loss. The reported loss stays
    the plain cross-entropy, as in fastai."""

    order = 10
    needs_activations = True

    def __init__(self, alpha: float = 2.0, beta: float = 1.0):
        self.alpha, self.beta = alpha, beta

    def after_loss(self, learn: Any) -> None:
        raw, dropped = learn.activations
        if self.alpha:
            learn.loss_grad = learn.loss_grad + self.alpha * dropped.float().pow(2).mean()
        if self.beta and raw.shape[1] > 1:
            learn.loss_grad = learn.loss_grad + self.beta * (raw[:, 1:] - raw[:, :-1]).float().pow(2).mean()


class GradientClip(Callback):
    """Clip the gradients' global norm to ``max_norm`` before each step."""

    def __init__(self, max_norm: float):
        self.max_norm = max_norm

    def before_step(self, learn: Any) -> None:
        learn.precision.unscale(learn.opt)  # fp16: clip the true gradients, not the scaled ones
        norm = torch.nn.utils.clip_grad_norm_(learn.model.parameters(), self.max_norm, foreach=True)
        if learn.watch_finite and not learn.precision.skips_overflow:  # fp16's scaler skips a step that overflowed, and goes on
            learn.finite.observe(norm, learn.batch)  # a non-finite gradient norm stops training like a non-finite loss


class OneCycleScheduler(Callback):
    """Set each step's learning rate and beta1 from a :class:`OneCycle` schedule."""

    order = -10

    def __init__(self, schedule: OneCycle):
        self.schedule = schedule

    def before_batch(self, learn: Any) -> None:
        learn.hypers.set(*self.schedule.at(learn.train_iter / learn.total_iters))
