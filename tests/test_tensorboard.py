"""``train --tensorboard`` / ``TensorBoard(dir)``: event files read back; plain progress in logs."""

import subprocess
import sys

import pytest

from looplm.runconfig import TrainConfig
from looplm.training import train

tb = pytest.importorskip("tensorboard", reason='tensorboard is not installed: pip install -e ".[tensorboard]"')


def read_events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return acc


def test_events_read_back_match_the_training_table(tmp_path):
    from looplm.tensorboard import TensorBoard

    cfg = TrainConfig(model="lm4", epochs=2, lr=3e-3, bs=16, sl=8, model_config={"n_hidden": 16})
    result = train(cfg, log=None, progress=False, cbs=[TensorBoard(tmp_path / "tb", {"lr": 3e-3, "model": "lm4"})])
    learn = result.learner
    acc = read_events(tmp_path / "tb")
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss_step", "train/grad_norm", "opt/lr", "opt/mom", "train/loss", "valid/loss",
            "valid/accuracy", "valid/perplexity", "speed/tokens_per_s"} <= tags
    steps = acc.Scalars("train/loss_step")
    assert [e.step for e in steps] == list(range(1, learn.train_iter + 1))  # every update, in order
    valid = acc.Scalars("valid/loss")
    assert [round(e.value, 5) for e in valid] == [round(m.valid_loss, 5) for m in learn.history]
    lrs = [e.value for e in acc.Scalars("opt/lr")]
    assert max(lrs) == pytest.approx(3e-3, rel=0.05) and lrs[0] < lrs[len(lrs) // 4] > lrs[-1]  # one-cycle
    assert all(e.value > 0 for e in acc.Scalars("train/grad_norm"))
    assert all(e.value > 0 for e in acc.Scalars("speed/tokens_per_s"))
    assert acc.PluginTagToContent("hparams")  # the run's hyperparameters with its final metrics


def test_train_tensorboard_flag_writes_rundir_tb(tmp_path):
    out = tmp_path / "run"
    code = subprocess.call([sys.executable, "-m", "looplm", "train", "--model", "lm4", "--epochs", "1", "--bs", "16",
                            "--sl", "8", "--set", "n_hidden=16", "--tensorboard", "--quiet", "--out", str(out)])
    assert code == 0
    assert len(read_events(out / "tb").Scalars("valid/loss")) == 1

