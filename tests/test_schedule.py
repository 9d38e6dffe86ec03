import math

import pytest

from looplm.schedule import OneCycle, cos_anneal, valley


def test_one_cycle_as_fastai():
    sched = OneCycle(1e-2)
    lr, mom = sched.at(0.0)
    assert lr == pytest.approx(1e-2 / 25) and mom == pytest.approx(0.95)
    lr, mom = sched.at(0.25)
    assert lr == pytest.approx(1e-2) and mom == pytest.approx(0.85)
    lr, mom = sched.at(1.0)
    assert lr == pytest.approx(1e-2 / 1e5) and mom == pytest.approx(0.95)
    # halfway through the warm-up: the cosine's midpoint
    lr, _ = sched.at(0.125)
    assert lr == pytest.approx((1e-2 / 25 + 1e-2) / 2)
    lrs = [sched.at(i / 100)[0] for i in range(100)]
    peak = lrs.index(max(lrs))
    assert peak == 25 and all(a <= b for a, b in zip(lrs[:peak], lrs[1:peak + 1]))
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1:]))


def test_cos_anneal_ends():
    assert cos_anneal(1.0, 3.0, 0.0) == pytest.approx(1.0)
    assert cos_anneal(1.0, 3.0, 1.0) == pytest.approx(3.0)


def test_valley_sits_inside_the_longest_descent():
    lrs = [10 ** (-7 + 8 * i / 99) for i in range(100)]
    # flat, then a long descent from index 30 to 80, then divergence
    losses = [3.0] * 30 + [3.0 - 0.04 * i for i in range(50)] + [1.0 + 0.5 * i for i in range(20)]
    suggestion = valley(lrs, losses)
    index = lrs.index(suggestion)
    assert 30 < index < 80
    assert math.isclose(suggestion, lrs[index])
