"""Interrupt a run with Ctrl-C (a real SIGINT), resume it, and get the losses of an uninterrupted run."""

import os
import signal

import pytest
import torch

from looplm.callbacks import Callback
from looplm.checkpoint import CHECKPOINT, TrainingInterrupted
from looplm.cli.main import main
from looplm.errors import LooplmError
from looplm.rundir import load_run
from looplm.training import TrainConfig, resume_training, train

CFG = dict(model="lm7", epochs=2, lr=1e-2, wd=0.1, bs=32, sl=16, seed=0, alpha=2.0, beta=1.0,
           moms=(0.8, 0.7, 0.8), model_config={"n_hidden": 32})


class CtrlCAt(Callback):
    def __init__(self, iteration):
        self.iteration = iteration

    def after_batch(self, learn):
        if learn.train_iter == self.iteration:
            os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    result = train(TrainConfig(**CFG), out=out, log=None, progress=False)
    return out, [m.as_dict() for m in result.learner.history]


@pytest.mark.parametrize("stop_at", ["mid-epoch", "epoch-end"])
def test_interrupted_and_resumed_equals_straight(tmp_path, straight, stop_at):
    straight_dir, straight_history = straight
    per_epoch = len(train(TrainConfig(**{**CFG, "epochs": 1}), log=None, progress=False).learner.train)
    iteration = per_epoch + 7 if stop_at == "mid-epoch" else per_epoch
    with pytest.raises(TrainingInterrupted):
        train(TrainConfig(**CFG), out=tmp_path, log=None, progress=False, cbs=[CtrlCAt(iteration)])
    assert (tmp_path / CHECKPOINT / "trainer.json").is_file()
    resumed = resume_training(tmp_path, log=None, progress=False)
    history = [m.as_dict() for m in resumed.learner.history]
    for a, b in zip(history, straight_history, strict=True):
        assert (a["train_loss"], a["valid_loss"], a["accuracy"]) == (b["train_loss"], b["valid_loss"], b["accuracy"])
    for (k, v), (_, w) in zip(load_run(tmp_path).model.state_dict().items(),
                              load_run(straight_dir).model.state_dict().items()):
        assert torch.equal(v, w), k


def test_resume_without_checkpoint(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_damaged_checkpoint(tmp_path, straight):
    straight_dir, _ = straight
    import shutil
    run = tmp_path / "run"
    shutil.copytree(straight_dir, run)
    (run / CHECKPOINT / "trainer.safetensors").write_bytes(b"garbage")
    with pytest.raises(LooplmError, match="damaged"):
        resume_training(run, log=None, progress=False)
