"""--time-budget: the plan fits and is maximal, a budgeted run trains as a plain run of its
planned updates would, ends on time with a finished schedule, and resumes to its plan;
--variable-sl lengths come in buckets."""

import json
import time
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from looplm.budget import BudgetPlan, KeepDeadline, fit_updates
from looplm.callbacks import Callback
from looplm.checkpoint import TrainingInterrupted
from looplm.cli.main import main
from looplm.data import load_corpus
from looplm.learner import Learner
from looplm.models import build_model
from looplm.resume import resume_training
from looplm.strategies import VariableChunks
from looplm.training import TrainConfig, train

from test_resume import CtrlCAt


def cost(updates: int, per_update: float, per_validation: float, n: int) -> float:
    """Training ``updates`` updates, validating after each epoch started."""
    return updates * per_update + -(-updates // n) * per_validation


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 50), st.integers(0, 500), st.integers(1, 40))
def test_the_planned_updates_fit_and_one_more_would_not(seconds, per_update, per_validation, n):
    total = fit_updates(seconds, per_update, per_validation, n)
    assert cost(total, per_update, per_validation, n) <= seconds
    assert cost(total + 1, per_update, per_validation, n) > seconds


class LRs(Callback):
    order = 50  # after the schedule set the step's rate

    def __init__(self):
        self.lrs = []

    def before_step(self, learn):
        self.lrs.append(learn.opt.param_groups[0]["lr"])


def test_max_updates_stops_inside_the_last_epoch_with_the_schedule_finished():
    corpus = load_corpus("human-numbers")
    torch.manual_seed(0)
    model = build_model("lm6", len(corpus.vocab), n_hidden=32)
    train_b, valid_b = corpus.batches(bs=32, sl=16, layout="every")
    n = len(train_b)
    learn = Learner(model, train_b, valid_b, log=None, progress=False)
    lrs = LRs()
    history = learn.fit_one_cycle(5, 1e-2, cbs=[lrs], max_updates=2 * n + n // 3)
    assert len(history) == 3 and learn.train_iter == len(lrs.lrs) == 2 * n + n // 3
    assert max(lrs.lrs) == pytest.approx(1e-2, rel=1e-3)
    assert lrs.lrs[-1] < 1e-2 / 1e3  # annealed to the end of the cycle: the schedule ended here
    assert history[-1].accuracy > 0.4  # and the partial epoch was validated


SMALL = dict(model="lm7", lr=1e-2, wd=0.1, bs=32, sl=16, seed=0, alpha=2.0, beta=1.0, moms=(0.8, 0.7, 0.8),
             model_config={"n_hidden": 32})


def test_a_budgeted_run_trains_as_a_plain_run_of_its_planned_updates(tmp_path, monkeypatch):
    """The warm-up is undone: weights and random numbers are as if it never ran (on a machine
    that keeps the warm-up's pace: the deadline keeper is told so, whatever the CI's load)."""
    monkeypatch.setattr(KeepDeadline, "_fitting_total", lambda self, done, left: done + left)
    lines = []
    budgeted = train(TrainConfig(**SMALL, epochs=100, time_budget=0.2), out=tmp_path / "b", log=lines.append,
                     progress=False)
    plan = budgeted.config.budget
    assert any(line.startswith("time budget 0.2 min") for line in lines)
    saved = json.loads((tmp_path / "b" / "config.json").read_text())["training"]
    assert saved["budget"] == plan and saved["epochs"] == budgeted.config.epochs
    plain = train(TrainConfig(**SMALL, epochs=budgeted.config.epochs, budget=plan), log=None, progress=False)
    assert plain.learner.train_iter == budgeted.learner.train_iter == plan["total_updates"]
    assert [m.train_loss for m in plain.learner.history] == [m.train_loss for m in budgeted.learner.history]
    assert [m.valid_loss for m in plain.learner.history] == [m.valid_loss for m in budgeted.learner.history]


def rows_of(tmp_path) -> list[str]:
    return (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]


def test_a_tiny_budget_ends_on_time_with_a_finished_schedule_and_learned_quality(tmp_path, capsys):
    budget_s = 20
    start = time.monotonic()
    assert main(["train", "--model", "lm6", "--set", "n_hidden=64", "--bs", "32", "--lr", "1e-2", "--seed", "0",
                 "--time-budget", str(budget_s / 60), "--out", str(tmp_path / "run")]) == 0
    elapsed = time.monotonic() - start
    out = capsys.readouterr().out
    assert "time budget" in out and "epochs (" in out
    plan = json.loads((tmp_path / "run" / "config.json").read_text())["training"]["budget"]
    planned = plan["total_updates"] * plan["seconds_per_update"] + len(rows_of(tmp_path)) * plan["seconds_per_validation"]
    assert planned <= budget_s * 0.95  # the plan fits, margin kept
    # the wall clock follows the plan only as far as the CPU's load stays as the warm-up saw it:
    # on a shared, loaded CPU allow much (a free CPU ends within the budget)
    assert elapsed < budget_s * 2.5, f"{elapsed:.1f} s for a budget of {budget_s} s"
    rows = rows_of(tmp_path)
    assert len(rows) == -(-plan["total_updates"] // plan["updates_per_epoch"]) >= 2
    assert float(rows[-1].split(",")[3]) > 0.25  # valid accuracy: it learned (the baseline is 0.15)


def test_epochs_cap_a_budget_and_a_budget_too_small_is_refused(tmp_path, capsys):
    assert main(["train", "--model", "lm6", "--set", "n_hidden=16", "--epochs", "2", "--time-budget", "5",
                 "--quiet", "--out", str(tmp_path / "capped")]) == 0
    plan = json.loads((tmp_path / "capped" / "config.json").read_text())["training"]["budget"]
    assert plan["total_updates"] == 2 * plan["updates_per_epoch"]
    assert main(["train", "--model", "lm6", "--time-budget", "0.001", "--out", str(tmp_path / "tiny")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "leaves no time to train" in err
    assert not (tmp_path / "tiny" / "config.json").exists()


def test_a_resumed_budgeted_run_follows_its_plan(tmp_path):
    cfg = TrainConfig(**SMALL, epochs=100, time_budget=0.2)
    with pytest.raises(TrainingInterrupted):
        train(cfg, out=tmp_path, log=None, progress=False, cbs=[CtrlCAt(30)])
    plan = json.loads((tmp_path / "config.json").read_text())["training"]["budget"]
    lines = []
    resumed = resume_training(tmp_path, log=lines.append, progress=False)
    assert not any(line.startswith("time budget") for line in lines)  # not planned again
    assert resumed.config.budget == plan and resumed.learner.train_iter == plan["total_updates"]


def test_variable_lengths_come_in_buckets_around_sl():
    corpus = load_corpus("human-numbers")
    train_b, _ = corpus.batches(bs=32, sl=70, layout="every")
    free, bucketed = VariableChunks(seed=0).lengths(train_b, 0), VariableChunks(seed=0, bucket=8).lengths(train_b, 0)
    assert sum(free) == sum(bucketed) == train_b.inputs.shape[1]  # the whole stream, once
    assert all(n % 8 == 0 for n in bucketed[:-1])  # the last takes what is left
    assert len(set(bucketed)) <= 6 < len(set(free))
    assert abs(sum(bucketed) / len(bucketed) - sum(free) / len(free)) < 2  # the same mean length


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run_epochs(keeper, learn, clock, seconds_per_update, seconds_per_validation, n, epochs):
    """Drive ``keeper`` through ``epochs`` epochs of ``n`` updates at the given speed."""
    for _ in range(epochs):
        if learn.train_iter >= learn.total_iters:
            return
        keeper.before_epoch(learn)
        steps = min(n, learn.total_iters - learn.train_iter)
        clock.now += steps * seconds_per_update
        learn.train_iter += steps
        keeper.before_validate(learn)
        clock.now += seconds_per_validation
        keeper.after_epoch(learn)


def fake_learner(total: int):
    return SimpleNamespace(train_iter=0, total_iters=total, dist=SimpleNamespace(main_only=lambda fn: fn()))


@settings(max_examples=60, deadline=None)
@given(slowdown=st.floats(0.5, 4.0), n=st.integers(5, 200), epochs=st.integers(2, 20))
def test_the_deadline_keeper_shortens_a_slowed_run_to_end_in_time_and_never_lengthens(slowdown, n, epochs):
    per_update, per_validation = 0.1, 1.0
    deadline = epochs * (n * per_update + per_validation)  # the plan fills it exactly
    plan = BudgetPlan(1.0, per_update, per_validation, n, epochs * n)
    clock, changes, lines = FakeClock(), [], []
    keeper = KeepDeadline(plan, deadline, on_change=changes.append, log=lines.append, clock=clock)
    learn = fake_learner(plan.total_updates)
    run_epochs(keeper, learn, clock, per_update * slowdown, per_validation * slowdown, n, epochs)
    if slowdown <= 1.0:  # as fast as planned or faster: the plan stands
        assert learn.total_iters == plan.total_updates and not changes and not lines
        return
    slack = keeper.slack * deadline + per_update * slowdown  # what the keeper lets stand
    if not changes:  # a slowdown within the slack
        assert clock.now <= deadline + slack
        return
    # slower: after the first epoch (the first measurement) the rest is cut to fit
    assert learn.total_iters < plan.total_updates and changes[-1].total_updates == learn.total_iters
    assert all(a.total_updates > b.total_updates for a, b in zip(changes, changes[1:]))  # only ever shorter
    assert lines and "the schedule now ends after" in lines[0]
    first_epoch = n * per_update * slowdown + per_validation * slowdown
    if first_epoch <= deadline:
        assert clock.now <= deadline + slack  # ended in time
    assert learn.train_iter == learn.total_iters


def test_a_run_that_slows_after_its_warm_up_ends_near_its_budget(tmp_path, capsys):
    """A callback that only the real run has (not the warm-up) makes each update ~5 ms slower:
    the planned updates would overrun; the run shortens its schedule, says so, and saves the
    new plan (a resumed run follows it)."""

    class Slow(Callback):
        def after_batch(self, learn):
            time.sleep(0.005)

    budget_s = 12
    start = time.monotonic()
    lines = []
    result = train(TrainConfig(**SMALL, epochs=100, time_budget=budget_s / 60), out=tmp_path / "run",
                   log=lines.append, progress=False, cbs=[Slow()])
    elapsed = time.monotonic() - start
    first = next(line for line in lines if line.startswith("time budget 0.2 min"))
    planned = int(first.split("(")[1].split(" updates")[0])
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["training"]
    assert any("the schedule now ends after" in line for line in lines)
    assert saved["budget"]["total_updates"] == result.learner.train_iter < planned
    assert saved["epochs"] == result.config.epochs == -(-result.learner.train_iter // saved["budget"]["updates_per_epoch"])
    assert elapsed < budget_s * 1.3, f"{elapsed:.1f} s for a budget of {budget_s} s"
    assert result.learner.history[-1].accuracy > 0.3
