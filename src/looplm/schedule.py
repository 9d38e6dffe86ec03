"""Learning-rate and momentum schedules: fastai's one-cycle and the LR finder's sweep.

One cycle over the whole fit (pos = batches done / total batches)::

    lr   lr_max/div --cos--> lr_max --------cos--------> lr_max/div_final
    mom  moms[0]    --cos--> moms[1] -------cos--------> moms[2]
         |<- pct_start ->|<---------- 1 - pct_start ---------->|
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def cos_anneal(start: float, end: float, pos: float) -> float:
    """Cosine from ``start`` (pos=0) to ``end`` (pos=1)."""
    return start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2


def combined_cos(pct: float, start: float, middle: float, end: float, pos: float) -> float:
    """``start -> middle`` over the first ``pct`` of training, then ``middle -> end``."""
    if pos < pct:
        return cos_anneal(start, middle, pos / pct)
    return cos_anneal(middle, end, min((pos - pct) / (1 - pct), 1.0))


@dataclass(frozen=True)
class OneCycle:
    """fastai's ``fit_one_cycle`` schedule: ``at(pos) -> (lr, beta1)`` for pos in [0, 1)."""

    lr_max: float
    div: float = 25.0
    div_final: float = 1e5
    pct_start: float = 0.25
    moms: tuple[float, float, float] = (0.95, 0.85, 0.95)

    def at(self, pos: float) -> tuple[float, float]:
        lr = combined_cos(self.pct_start, self.lr_max / self.div, self.lr_max, self.lr_max / self.div_final, pos)
        mom = combined_cos(self.pct_start, *self.moms, pos)
        return lr, mom


@dataclass(frozen=True)
class ExponentialSweep:
    """The LR finder's sweep: ``start_lr * (end_lr/start_lr) ** pos``."""

    start_lr: float = 1e-7
    end_lr: float = 10.0

    def at(self, pos: float) -> float:
        return self.start_lr * (self.end_lr / self.start_lr) ** pos


def steepest(lrs: list[float], losses: list[float], width: float = 0.25) -> float:
    """Where the loss falls fastest before its minimum: the learning rate at the most negative
    slope d(loss)/d(log10 lr), each slope measured across ``width`` decades (a line fitted to the
    points within width/2 on either side), so that noise on a long flat start, which makes
    fastai's "valley" land there, averages out. lrs must grow."""
    n = len(losses)
    if n < 2:
        raise ValueError("the LR finder needs at least two points to suggest a learning rate")
    x = [math.log10(lr) for lr in lrs]
    lowest = min(range(n), key=losses.__getitem__)
    best, best_slope = 0, math.inf
    for i in range(max(lowest, 1)):
        near = [j for j in range(n) if abs(x[j] - x[i]) <= width / 2 and j <= lowest]
        if len(near) < 2:
            continue
        mx = sum(x[j] for j in near) / len(near)
        my = sum(losses[j] for j in near) / len(near)
        var = sum((x[j] - mx) ** 2 for j in near)
        slope = sum((x[j] - mx) * (losses[j] - my) for j in near) / var if var else 0.0
        if slope < best_slope:
            best, best_slope = i, slope
    return float(lrs[best])


def valley(lrs: list[float], losses: list[float]) -> float:
    """fastai's "valley" suggestion: inside the longest run of decreasing losses
    (longest decreasing subsequence), a point a half past its first third."""
    n = len(losses)
    if n < 2:
        raise ValueError("the LR finder needs at least two points to suggest a learning rate")
    run = [1] * n  # run[i]: longest decreasing subsequence ending at i
    start = end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and run[i] < run[j] + 1:
                run[i] = run[j] + 1
        if run[i] > run[end]:
            end = i
            start = end - run[end]
    third = (end - start) / 3
    return float(lrs[start + int(third) + int(third / 2)])
