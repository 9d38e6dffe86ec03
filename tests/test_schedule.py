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


@pytest.mark.parametrize("seed", range(5))
def test_steepest_lands_on_the_fall_not_on_a_long_flat_start(seed):
    """A word-level sweep: flat and noisy from 1e-7 to 1e-3, the loss falls between 2e-3 and
    3e-2, then explodes. The suggestion must be inside the fall, whatever the noise."""
    import random

    from looplm.schedule import steepest

    rng = random.Random(seed)
    lrs = [10 ** (-7 + 8 * i / 199) for i in range(200)]
    losses = []
    for lr in lrs:
        x = math.log10(lr)
        base = 9.2 if x < math.log10(2e-3) else 9.2 - 3.5 * (x - math.log10(2e-3)) / math.log10(15)
        if x > math.log10(3e-2):
            base = 5.7 + 8 * (x - math.log10(3e-2))
        losses.append(base + rng.gauss(0, 0.02))
    s = steepest(lrs, losses)
    assert 2e-3 <= s <= 3e-2
    assert steepest(lrs[:2], [1.0, 0.5]) == lrs[0]
    with pytest.raises(ValueError):
        steepest(lrs[:1], losses[:1])


def test_lr_find_plot_clips_the_explosion(tmp_path):
    from looplm.plots import plot_lr_find

    lrs = [10 ** (-5 + i / 10) for i in range(50)]
    losses = [3.0 - 0.02 * i for i in range(40)] + [2.2 * 3 ** k for k in range(10)]
    plot_lr_find(lrs, losses, lrs[20], tmp_path / "lr.png")
    assert (tmp_path / "lr.png").read_bytes()[:4] == b"\x89PNG"
