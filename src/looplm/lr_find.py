"""The LR finder (fastai's): train on an exponentially growing learning rate and
watch the loss; the weights are restored afterwards."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

from looplm.callbacks import Callback, CancelFit
from looplm.learner import Learner
from looplm.schedule import ExponentialSweep, steepest


@dataclass
class LRFindResult:
    lrs: list[float]
    losses: list[float]  # smoothed
    suggestion: float


class _Sweep(Callback):
    order = -10

    def __init__(self, sweep: ExponentialSweep, num_it: int, stop_div: bool):
        self.sweep, self.num_it, self.stop_div = sweep, num_it, stop_div
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.avg, self.best = 0.0, math.inf

    def before_batch(self, learn: Learner) -> None:
        lr = self.sweep.at(learn.train_iter / self.num_it)
        self.lrs.append(lr)
        learn.hypers.set(lr)

    def after_batch(self, learn: Learner) -> None:
        # One sync per batch is the point here: the sweep stops on the loss it sees.
        loss = learn.loss_grad.item()
        n = len(self.losses) + 1
        self.avg = 0.98 * self.avg + 0.02 * loss
        smooth = self.avg / (1 - 0.98**n)
        self.losses.append(smooth)
        self.best = min(self.best, smooth)
        if learn.train_iter >= self.num_it or (self.stop_div and (smooth > 4 * self.best or math.isnan(smooth))):
            raise CancelFit


def lr_find(learn: Learner, start_lr: float = 1e-7, end_lr: float = 10.0, num_it: int = 100,
            stop_div: bool = True) -> LRFindResult:
    saved = copy.deepcopy(learn.model.state_dict())
    sweep = _Sweep(ExponentialSweep(start_lr, end_lr), num_it, stop_div)
    log, learn.log = learn.log, None
    watch, learn.watch_finite = learn.watch_finite, False  # the sweep stops on divergence itself
    try:
        learn.fit(math.ceil(num_it / len(learn.train_data)), start_lr, cbs=[sweep])
    finally:
        learn.log, learn.watch_finite = log, watch
        learn.model.load_state_dict(saved)
        learn.history.clear()
    # fastai drops the first tenth and the last five points before suggesting
    lrs, losses = sweep.lrs[num_it // 10 : -5], sweep.losses[num_it // 10 : -5]
    if len(losses) < 2:
        lrs, losses = sweep.lrs, sweep.losses
    return LRFindResult(sweep.lrs, sweep.losses, steepest(lrs, losses))
