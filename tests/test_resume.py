"""Interrupt a run with Ctrl-C (a real SIGINT), resume it, and get the losses of an uninterrupted run."""

import csv
import os
import signal

import pytest
import torch

from looplm.callbacks import Callback
from looplm.checkpoint import TrainingInterrupted, latest_checkpoint
from looplm.cli.main import main
from looplm.errors import LooplmError
from looplm.rundir import load_run
from looplm.data.sources import DataOptions
from looplm.resume import resume_training
from looplm.training import TrainConfig, train

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
    per_epoch = len(train(TrainConfig(**{**CFG, "epochs": 1}), log=None, progress=False).learner.train_data)
    iteration = per_epoch + 7 if stop_at == "mid-epoch" else per_epoch
    with pytest.raises(TrainingInterrupted):
        train(TrainConfig(**CFG), out=tmp_path, log=None, progress=False, cbs=[CtrlCAt(iteration)])
    assert (latest_checkpoint(tmp_path) / "trainer.json").is_file()
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
    (latest_checkpoint(run) / "trainer.safetensors").write_bytes(b"garbage")
    with pytest.raises(LooplmError, match="damaged"):
        resume_training(run, log=None, progress=False)


TEXT = "the cat sat on the mat. the dog ran to the sun. a bird sang on the hill.\n" * 12


@pytest.mark.parametrize("layout", ["file", "folder-shuffled"])
def test_a_text_run_resumed_equals_straight(tmp_path, monkeypatch, capsys, layout):
    """Char tokenizer on a text file (or a folder, documents shuffled per epoch): stopped by
    Ctrl-C in the middle of an epoch, resumed from the CLI with the token cache gone, so the
    resumed run reads its data with the tokenizer saved in the run directory."""
    import shutil

    if layout == "file":
        data = tmp_path / "story.txt"
        data.write_text(TEXT, encoding="utf-8")
    else:
        data = tmp_path / "docs"
        data.mkdir()
        for i, line in enumerate(TEXT.splitlines()[:12]):
            (data / f"{i:02d}.txt").write_text(f"{i} {line}\n" * 3, encoding="utf-8")
    options = DataOptions(tokenizer="char", shuffle_docs=layout != "file", seed=3)
    cfg = dict(data=str(data), model="lstm", epochs=2, lr=1e-2, bs=4, sl=16, seed=3, data_options=options,
               model_config={"emb_sz": 8, "n_hidden": 16, "n_layers": 1})
    straight = train(TrainConfig(**cfg), out=tmp_path / "straight", log=None, progress=False)
    per_epoch = len(straight.learner.train_data)
    stop_at = 5 if layout == "file" else per_epoch + 5  # the middle of the first or the second epoch
    monkeypatch.setenv("LOOPLM_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        train(TrainConfig(**cfg), out=run, log=None, progress=False, cbs=[CtrlCAt(stop_at)])
    shutil.rmtree(tmp_path / "cache")
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    resumed = [row[:4] for row in csv.reader((run / "metrics.csv").open())]  # epoch, losses, accuracy
    assert resumed == [row[:4] for row in csv.reader((tmp_path / "straight" / "metrics.csv").open())]
    assert len(resumed) == 3 and resumed[1][1:] != resumed[2][1:]
    assert (run / "tokenizer.json").read_text() == (tmp_path / "straight" / "tokenizer.json").read_text()
    for (k, v), (_, w) in zip(load_run(run).model.state_dict().items(),
                              load_run(tmp_path / "straight").model.state_dict().items(), strict=True):
        assert torch.equal(v, w), k
