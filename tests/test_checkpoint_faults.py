"""A checkpoint survives a crash at any instant: the writer is stopped after each step of a
checkpoint write in turn (as a kill -9 would stop it: no cleanup runs), and the run then
resumes to exactly the losses and weights of an uninterrupted run."""

import os
import subprocess
import sys

import pytest
import torch

from looplm import checkpoint
from looplm.checkpoint import WRITE_STEPS, latest_checkpoint
from looplm.resume import resume_training
from looplm.rundir import load_run
from looplm.training import TrainConfig, train

TEXT = "the cat sat on the mat. the dog sat on the log.\n" * 12
SMALL = dict(model="lstm", bs=4, sl=8, lr=1e-2, epochs=3, model_config={"emb_sz": 8, "n_hidden": 8, "n_layers": 1})


class Killed(BaseException):
    """What the writer sees of a kill -9: nothing (no except clause catches this)."""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults") / "d.txt"
    path.write_text(TEXT)
    return path


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    result = train(TrainConfig(data=str(data), **SMALL), out=out, log=None, progress=False)
    return out, [m.as_dict() for m in result.learner.history]


def losses(history):
    return [(m["train_loss"], m["valid_loss"], m["accuracy"]) for m in history]


def kill_after(step: int, write: int):
    """A fault hook that stops the ``write``-th checkpoint write after step ``step``."""
    seen = {"writes": 0}

    def hook(k: int) -> None:
        if k == 1:
            seen["writes"] += 1
        if seen["writes"] == write and k == step:
            raise Killed

    return hook


@pytest.mark.parametrize("step", range(1, WRITE_STEPS + 1))
def test_a_writer_killed_after_any_step_resumes_to_the_same_losses(data, straight, tmp_path, monkeypatch, step):
    straight_dir, expected = straight
    out = tmp_path / "run"
    monkeypatch.setattr(checkpoint, "fault_hook", kill_after(step, write=2))
    with pytest.raises(Killed):
        train(TrainConfig(data=str(data), **SMALL), out=out, log=None, progress=False)
    monkeypatch.setattr(checkpoint, "fault_hook", None)
    newest = latest_checkpoint(out)
    assert newest.name == ("checkpoint-000001" if step >= 5 else "checkpoint-000000")  # renamed at step 5
    resumed = resume_training(out, log=None, progress=False)
    assert losses([m.as_dict() for m in resumed.learner.history]) == losses(expected)
    for (k, v), (_, w) in zip(load_run(out).model.state_dict().items(),
                              load_run(straight_dir).model.state_dict().items(), strict=True):
        assert torch.equal(v, w), k
    assert [p.name for p in out.iterdir() if "checkpoint" in p.name] == [latest_checkpoint(out).name]


def test_a_real_kill_9_between_fsync_and_rename(data, straight, tmp_path):
    """``LOOPLM_CHECKPOINT_FAULT=k`` SIGKILLs the process itself after step k."""
    out = tmp_path / "run"
    env = {**os.environ, "LOOPLM_CHECKPOINT_FAULT": "4"}
    proc = subprocess.run([sys.executable, "-m", "looplm", "train", "--data", str(data), "--model", "lstm",
                           "--emb-sz", "8", "--n-hidden", "8", "--n-layers", "1", "--bs", "4", "--sl", "8",
                           "--epochs", "3", "--quiet", "--out", str(out)], env=env, capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    assert latest_checkpoint(out) is None  # killed during the first write: nothing to resume, said so
    assert any(p.name.startswith(".checkpoint-") for p in out.iterdir())  # the half-written folder is hidden
    with pytest.raises(Exception, match="no checkpoint"):
        resume_training(out, log=None, progress=False)


def test_leftovers_beside_the_checkpoint_are_never_followed(data, straight, tmp_path, snapshot):
    """A .checkpoint.old symlink (or any hidden leftover) pointing outside the run is removed as
    a link on the next write: what it points to is untouched."""
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "thesis.tex").write_text("years of work")
    before = snapshot(outside)
    out = tmp_path / "run"
    monkey = kill_after(7, write=1)
    checkpoint.fault_hook = monkey
    try:
        with pytest.raises(Killed):
            train(TrainConfig(data=str(data), **SMALL), out=out, log=None, progress=False)
    finally:
        checkpoint.fault_hook = None
    (out / ".checkpoint.old").symlink_to(outside)
    (out / ".checkpoint-000001.tmp").symlink_to(outside)  # the name the next write uses
    resume_training(out, log=None, progress=False)
    assert snapshot(outside) == before
    assert not (out / ".checkpoint.old").is_symlink()
