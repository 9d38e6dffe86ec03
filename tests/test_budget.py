"""--time-budget: the plan fits and is maximal, a budgeted run trains as a plain run of its
planned updates would, ends on time with a finished schedule, and resumes to its plan;
--variable-sl lengths come in buckets."""

import json
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from looplm.budget import fit_updates
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


def test_a_budgeted_run_trains_as_a_plain_run_of_its_planned_updates(tmp_path):
    """The warm-up is undone: weights and random numbers are as if it never ran."""
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
