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


@pytest.mark.parametrize("walk", ["tbptt-recompute", "tbptt-k2-below-k1", "windows-burn-in"])
def test_stopped_after_the_last_update_of_an_epoch_resumes_to_straight(tmp_path, walk):
    """Ctrl-C after an epoch's last update (its stride may be short), before its validation."""
    cfg = TrainConfig(**BASE, strategy=WALKS[walk])
    straight = train(cfg, log=None, progress=False)
    per_epoch = straight.learner.strategy.n_updates(straight.learner.train_data, 0)
    assert straight.learner.train_data.inputs.shape[1] % 12  # TBPTT(12, 5)'s last stride is short
    with pytest.raises(TrainingInterrupted, match=f"interrupted at epoch 0, batch {per_epoch}"):
        train(cfg, out=tmp_path / "run", log=None, progress=False, cbs=[CtrlCAt(per_epoch)])
    resumed = resume_training(tmp_path / "run", log=None, progress=False)
    assert rows(resumed.learner) == rows(straight.learner)


def test_stored_mode_resumes_within_one_stale_window(tmp_path):
    """stored re-runs the first window after the resume with the current weights (the straight run
    reused the graph of earlier weights) and draws its dropout masks anew: close, not equal."""
    straight, run = interrupted(tmp_path, TBPTTSpec(k1=4, k2=12, mode="stored"))
    resumed = resume_training(run, log=None, progress=False)
    first, second = rows(resumed.learner)
    assert first == rows(straight.learner)[0]  # the first epoch ended before the stop
    assert second[1] == pytest.approx(rows(straight.learner)[1][1], abs=0.05)
    assert second[2] > 0.3


def test_the_streams_rows_are_named_for_a_job_to_gather():
    """A job's checkpoint gathers each rank's rows of the stream: the inputs' and targets' dim 0,
    the states' dim 1 (as the learner's hidden state); the anchors' positions are shared."""
    from looplm.tbptt import TBPTTStream

    model = torch.nn.LSTM(3, 5, 2)

    def forward(x, state):  # x (bs, steps) of ids -> out (bs, steps, 5), state (2, bs, 5) twice
        out, state = model(x.float().unsqueeze(-1).expand(*x.shape, 3).transpose(0, 1), state)
        return out.transpose(0, 1), state

    stream = TBPTTStream(model, 2, 6, loss_fn=lambda out, y: out.pow(2).sum(), forward=forward)
    x = torch.randint(0, 4, (4, 10))
    for _ in stream.feed(x, x):
        pass
    sd = stream.state_dict()
    dims = TBPTT(2, 6).row_dims(sd)
    assert dims["history.inputs"] == dims["history.targets"] == 0 and "anchors" not in dims
    states = [k for k in dims if k.startswith(("end_state.", "anchor."))]
    assert states and all(dims[k] == 1 and sd[k].shape[1] == 4 for k in states)
    assert set(dims) == {k for k, v in sd.items() if isinstance(v, torch.Tensor)} - {"anchors"}
    assert Windows(16, overlap=4).row_dims({}) == {} and Chunks().row_dims({}) == {}


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
