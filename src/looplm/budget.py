"""A time budget: size the one-cycle schedule so that training and validation end in time.

    budget ─┬─ already spent (loading the data, building the model)
            ├─ warm-up: a few updates and validation batches, timed, then undone
            ├─ margin (checkpoints, the final save and plot, the load changing)
            └─ the rest: E whole epochs, each n updates + one validation,
                         then k < n updates of a last, partial epoch + its validation

The schedule is planned once, before the first real update: ``total_updates = E n + k``
and the one-cycle schedule ends exactly there, at a batch boundary inside the last epoch.
A machine can slow down after the warm-up (another job starts, a shared host gets busy):
:class:`KeepDeadline` checks the plan against the clock after each epoch and, when the
updates left would end past the deadline at the speed the run has had so far, ends the
schedule sooner (never later); the learning rate then follows the shortened cycle.
The warm-up trains a throwaway copy of the weights and puts the random number generator
back, so a budgeted run trains exactly as a plain run of ``total_updates`` updates would;
the plan is saved in config.json and a resumed run follows it without planning again.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from dataclasses import dataclass, replace
from typing import Callable

import torch

from looplm.callbacks import Callback, CancelFit
from looplm.data.batching import StreamBatches
from looplm.errors import LooplmError

MARGIN = 0.05  # of the budget, kept back for checkpoints, the final save and a changing load
MIN_MARGIN_S = 2.0


def deadline_margin(budget_s: float) -> float:
    """Seconds of a ``budget_s`` budget that training and validation leave free."""
    return max(MARGIN * budget_s, MIN_MARGIN_S)


@dataclass(frozen=True)
class BudgetPlan:
    """What a time budget buys: ``total_updates`` updates over ``epochs`` epochs (the last
    one ``fraction`` of an epoch), from the measured costs of an update and a validation."""

    minutes: float
    seconds_per_update: float
    seconds_per_validation: float
    updates_per_epoch: int
    total_updates: int

    @property
    def epochs(self) -> int:
        """Epochs started: the last may stop early."""
        return math.ceil(self.total_updates / self.updates_per_epoch)

    @property
    def fraction(self) -> float:
        """Epochs trained, e.g. 3.4."""
        return self.total_updates / self.updates_per_epoch

    def describe(self) -> str:
        return (f"time budget {self.minutes:g} min: {self.seconds_per_update * 1e3:.1f} ms per update, "
                f"{self.seconds_per_validation:.2f} s per validation -> {self.fraction:.2f} epochs "
                f"({self.total_updates} updates of {self.updates_per_epoch} per epoch)")


def fit_updates(seconds: float, per_update: float, per_validation: float, updates_per_epoch: int) -> int:
    """The most updates whose training and validations (one after each epoch, the last
    partial epoch included) fit in ``seconds``."""
    epoch_cost = updates_per_epoch * per_update + per_validation
    full = max(int(seconds // epoch_cost), 0)
    left = seconds - full * epoch_cost - per_validation  # the partial epoch's validation comes last
    extra = min(max(int(left // per_update), 0), updates_per_epoch - 1) if left > 0 else 0
    return full * updates_per_epoch + extra


class _Stopwatch(Callback):
    """Time each update of a warm-up fit; stop after ``min_updates`` once ``seconds`` passed."""

    order = 200

    def __init__(self, min_updates: int, max_updates: int, seconds: float):
        self.min_updates, self.max_updates, self.seconds = min_updates, max_updates, seconds
        self.times: list[float] = []

    def before_fit(self, learn) -> None:
        self.times.append(time.perf_counter())

    def after_batch(self, learn) -> None:
        self.times.append(time.perf_counter())
        n = len(self.times) - 1
        if n >= self.max_updates or (n >= self.min_updates and self.times[-1] - self.times[0] >= self.seconds):
            raise CancelFit


def _head(data: StreamBatches, n_batches: int) -> StreamBatches:
    """The first ``n_batches`` batches of ``data``."""
    width = n_batches * data.sl
    targets = data.targets[:, :width] if data.layout == "every" else data.targets[:, :n_batches]
    return StreamBatches(data.inputs[:, :width], targets, data.sl, data.layout)


def measure(learn, lr: float, warmup_s: float, cbs=()) -> tuple[float, float]:
    """(seconds per update, seconds per full validation) of ``learn`` with callbacks ``cbs``,
    measured on a throwaway copy of its weights, with its random number generator put back."""
    saved, rng, log, shown = copy.deepcopy(learn.model.state_dict()), torch.get_rng_state(), learn.log, learn.progress
    n = learn.strategy.n_updates(learn.train_data, 0)
    watch = _Stopwatch(min_updates=4, max_updates=min(n, 200), seconds=warmup_s)
    learn.log, learn.progress = None, False  # the warm-up is a measurement, not an epoch of the run
    try:
        learn.fit(1, lr, cbs=[*cbs, watch])
        intervals = [b - a for a, b in zip(watch.times[2:], watch.times[3:])]  # the first builds kernels
        per_update = statistics.fmean(intervals or [watch.times[-1] - watch.times[-2]])  # a load's bursts count
        n_valid = len(learn.valid_data)
        head = min(n_valid, max(2, n_valid // 20))
        learn.validate(_head(learn.valid_data, 1))  # kernels for the validation shapes
        start = time.perf_counter()
        learn.validate(_head(learn.valid_data, head))
        per_validation = (time.perf_counter() - start) * n_valid / head
    finally:
        learn.log, learn.progress = log, shown
        learn.model.load_state_dict(saved)
        learn.history.clear()
        torch.set_rng_state(rng)
    return per_update, per_validation


def plan_budget(learn, minutes: float, lr: float, elapsed_s: float, cbs=(), max_epochs: int | None = None) -> BudgetPlan:
    """Measure ``learn`` (every rank of a job does) and plan the updates that fit in ``minutes``
    minus the ``elapsed_s`` already spent, ``max_epochs`` at most; rank 0's plan is every rank's."""
    budget = minutes * 60
    start = time.perf_counter()
    per_update, per_validation = measure(learn, lr, min(0.03 * budget, 30.0), cbs)
    spent = elapsed_s + time.perf_counter() - start
    n = learn.strategy.n_updates(learn.train_data, 0)

    def plan() -> BudgetPlan:
        left = budget - spent - deadline_margin(budget)
        total = fit_updates(left, per_update, per_validation, n)
        if max_epochs is not None:
            total = min(total, max_epochs * n)
        if total < 1:
            need = (spent + per_update + per_validation + MIN_MARGIN_S) / 60 / (1 - MARGIN)
            raise LooplmError(f"--time-budget {minutes:g} min leaves no time to train: loading and warm-up took "
                              f"{spent:.1f} s and one update and a validation take {per_update + per_validation:.1f} s "
                              f"(give at least {need:.1f} min)")
        return BudgetPlan(minutes, per_update, per_validation, n, total)

    return learn.dist.main_only(plan)


class KeepDeadline(Callback):
    """Keep a planned run inside its budget: after each epoch (its validation done, before its
    checkpoint), estimate what the updates left cost at the speed measured so far in this run,
    training and validation timed apart, and when they would end after ``deadline`` (a
    ``clock()`` value), shorten the plan to the updates that still fit. Never lengthens it.

    ``on_change(plan)`` is called with each shortened plan (the run's config.json keeps it, so
    that a resumed run follows it); ``log`` gets one line saying why."""

    order = 50  # before the checkpointer (100) saves the epoch, so that it saves the new plan
    slack = 0.01  # an overrun within this share of the time left, plus one update, is let stand (no re-plan per epoch for noise)

    def __init__(self, plan: BudgetPlan, deadline: float, on_change: Callable[[BudgetPlan], None] | None = None,
                 log: Callable[[str], None] | None = None, clock: Callable[[], float] = time.monotonic):
        self.plan, self.deadline, self.on_change, self.log, self.clock = plan, deadline, on_change, log, clock
        self.train_s = self.valid_s = 0.0
        self.updates = self.validations = 0

    def before_epoch(self, learn) -> None:
        self._mark, self._first_update = self.clock(), learn.train_iter

    def before_validate(self, learn) -> None:
        now = self.clock()
        self.train_s += now - self._mark
        self.updates += learn.train_iter - self._first_update
        self._mark = now

    def after_epoch(self, learn) -> None:
        self.valid_s += self.clock() - self._mark
        self.validations += 1
        left_updates = learn.total_iters - learn.train_iter
        if left_updates <= 0 or self.updates == 0:
            return
        total = learn.dist.main_only(lambda: self._fitting_total(learn.train_iter, left_updates))
        if total < learn.total_iters:
            learn.total_iters = total
            self.plan = replace(self.plan, total_updates=total)
            if self.on_change is not None:
                self.on_change(self.plan)

    def _fitting_total(self, done: int, left_updates: int) -> int:
        """Rank 0's decision: the total updates that end in time (``done + left_updates`` if
        they all do)."""
        per_update, per_validation = self.train_s / self.updates, self.valid_s / self.validations
        n = self.plan.updates_per_epoch
        seconds_left = self.deadline - self.clock()
        need = left_updates * per_update + math.ceil(left_updates / n) * per_validation
        if need <= seconds_left * (1 + self.slack) + per_update:
            return done + left_updates
        total = done + fit_updates(seconds_left, per_update, per_validation, n)
        if self.log is not None:
            self.log(f"time budget: {per_update * 1e3:.1f} ms per update and {per_validation:.2f} s per validation "
                     f"so far (planned {self.plan.seconds_per_update * 1e3:.1f} ms, "
                     f"{self.plan.seconds_per_validation:.2f} s): the {left_updates} updates left would end "
                     f"{need - seconds_left:.1f} s late; the schedule now ends after {total} updates "
                     f"({total / n:.2f} epochs)")
        return total
