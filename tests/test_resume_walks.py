"""Ctrl-C in the middle of an epoch of TBPTT(k1, k2) or of stateless windows: the checkpoint
holds the walk (TBPTT's stream: the states where the next windows start, and their inputs),
and the resumed run continues that epoch instead of starting it again."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from looplm.checkpoint import TrainingInterrupted, latest_checkpoint
from looplm.errors import LooplmError
from looplm.resume import resume_training
from looplm.rundir import load_run
from looplm.runconfig import TBPTTSpec, WindowsSpec
from looplm.strategies import TBPTT, Chunks, Windows
from looplm.training import TrainConfig, train

from test_resume import CtrlCAt

# lm7 with dropout and AR/TAR: the RNG, the activations and the carried state all take part
BASE = dict(model="lm7", epochs=2, lr=1e-2, wd=0.1, bs=64, sl=16, seed=1, alpha=2.0, beta=1.0,
            moms=(0.8, 0.7, 0.8), model_config={"n_hidden": 24})
WALKS = {
    "tbptt-recompute": TBPTTSpec(k1=4, k2=12, mode="recompute"),
    "tbptt-k2-below-k1": TBPTTSpec(k1=12, k2=5, mode="recompute"),
    "windows-overlap": WindowsSpec(overlap=6),
    "windows-burn-in": WindowsSpec(burn_in=5),
}
STOP = 9  # updates into the second epoch


def interrupted(tmp_path, strategy, name="run"):
    cfg = TrainConfig(**BASE, strategy=strategy)
    straight = train(cfg, log=None, progress=False)
    per_epoch = straight.learner.strategy.n_updates(straight.learner.train_data, 0)
    run = tmp_path / name
    with pytest.raises(TrainingInterrupted, match=f"interrupted at epoch 1, batch {STOP}"):
        train(cfg, out=run, log=None, progress=False, cbs=[CtrlCAt(per_epoch + STOP)])
    return straight, run


def rows(learner):
    return [(m.train_loss, m.valid_loss, m.accuracy) for m in learner.history]


@pytest.mark.parametrize("walk", WALKS)
def test_resumed_mid_epoch_equals_straight(tmp_path, walk):
    straight, run = interrupted(tmp_path, WALKS[walk])
    meta = json.loads((latest_checkpoint(run) / "trainer.json").read_text())
    assert (meta["epoch"], meta["batch"]) == (1, STOP)  # the checkpoint is where it stopped
    resumed = resume_training(run, log=None, progress=False)
    assert rows(resumed.learner) == rows(straight.learner)
    for (k, v), w in zip(load_run(run).model.state_dict().items(), straight.learner.model.state_dict().values()):
        assert torch.equal(v, w), k
    assert rows(straight.learner)[-1][2] > 0.3  # it learned (the most frequent token: 0.15)


def test_stored_mode_resumes_within_one_stale_window(tmp_path):
    """stored re-runs the first window after the resume with the current weights (the straight run
    reused the graph of earlier weights) and draws its dropout masks anew: close, not equal."""
    straight, run = interrupted(tmp_path, TBPTTSpec(k1=4, k2=12, mode="stored"))
    resumed = resume_training(run, log=None, progress=False)
    first, second = rows(resumed.learner)
    assert first == rows(straight.learner)[0]  # the first epoch ended before the stop
    assert second[1] == pytest.approx(rows(straight.learner)[1][1], abs=0.05)
    assert second[2] > 0.3


def test_only_tbptt_under_data_parallel_restarts_its_epoch():
    """Each rank's stream holds its own rows; rank 0's checkpoint cannot hold them all."""
    assert TBPTT(4, 8).resumable_mid_epoch(1) and not TBPTT(4, 8).resumable_mid_epoch(2)
    assert Windows(16, overlap=4).resumable_mid_epoch(2) and Chunks().resumable_mid_epoch(2)


@pytest.mark.slow
def test_a_mid_epoch_tbptt_checkpoint_refuses_nproc_and_changes_nothing(tmp_path):
    """One process's stream holds every row; ranks would each need their own part of it."""
    import subprocess
    import sys

    _, run = interrupted(tmp_path, WALKS["tbptt-recompute"])
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    proc = subprocess.run([sys.executable, "-m", "looplm", "train", "--resume", str(run), "--nproc", "2", "--quiet"],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "resume it without --nproc" in proc.stderr
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_a_checkpoint_missing_any_part_of_the_stream_is_refused(tmp_path):
    """Every tensor and number of the saved stream, taken away or made inconsistent in turn:
    resume refuses in one LooplmError before training, never crashes later or trains from a
    stream that is not the one saved."""
    _, run = interrupted(tmp_path, WALKS["tbptt-recompute"])
    path = latest_checkpoint(run)
    tensors = load_file(str(path / "trainer.safetensors"))
    meta = json.loads((path / "trainer.json").read_text())
    # every part, except a state's list of None leaves, which older files lack (all tensors, here)
    walk_tensors = [k for k in tensors if k.startswith("strategy.")]
    assert {"strategy.anchors", "strategy.history.inputs", "strategy.history.targets"} <= set(walk_tensors)
    damages = [("tensor", k, None) for k in walk_tensors]
    damages += [("meta", (part, k), None) for part in ("strategy_ints", "strategy_texts")
                for k in meta[part] if not k.endswith(".none")]
    ints = meta["strategy_ints"]
    damages += [("meta", ("strategy_ints", "pos"), ints["pos"] + 3), ("meta", ("strategy_ints", "done"), ints["pos"] + 1),
                ("meta", ("strategy_ints", "history.start"), ints["done"] + 1)]
    for kind, key, value in damages:
        broken_t, broken_m = dict(tensors), json.loads(json.dumps(meta))
        if kind == "tensor":
            del broken_t[key]
        elif value is None:
            del broken_m[key[0]][key[1]]
        else:
            broken_m[key[0]][key[1]] = value
        save_file(broken_t, str(path / "trainer.safetensors"))
        (path / "trainer.json").write_text(json.dumps(broken_m))
        with pytest.raises(LooplmError, match="TBPTT stream is damaged|damaged"):
            resume_training(run, log=None, progress=False)
    save_file(tensors, str(path / "trainer.safetensors"))  # mended: it resumes
    (path / "trainer.json").write_text(json.dumps(meta))
    assert resume_training(run, log=None, progress=False).learner.epoch == 2


def test_a_walk_state_the_strategy_does_not_keep_is_refused():
    """Windows and chunks keep no walk: a checkpoint holding one was written by another strategy."""
    for strategy in (Windows(16, overlap=6), Chunks()):
        with pytest.raises(LooplmError, match="does not keep"):
            strategy.restore(None, {"pos": 4})
        strategy.restore(None, {})  # nothing to restore: fine
