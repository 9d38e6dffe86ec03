"""Non-finite numbers stop the run and are never saved: wherever in training the loss turns
nan, training stops naming that epoch and batch, exit code 3, and every file left in the run
directory is finite (the last finite checkpoint, never a non-finite one)."""

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st
from safetensors.torch import load_file, save_file

from looplm.callbacks import Callback
from looplm.cli.main import main
from looplm.finite import CHECK_EVERY, NonFiniteTraining
from looplm.training import TrainConfig, train

TEXT = "the cat sat on the mat. the dog sat on the log.\n" * 12
SMALL = dict(model="lstm", bs=4, sl=8, lr=1e-2, model_config={"emb_sz": 8, "n_hidden": 8, "n_layers": 1})


class Poison(Callback):
    """Turns the weights to nan after update ``k`` (counted over the whole fit)."""

    def __init__(self, k: int):
        self.k, self.where = k, None

    def after_batch(self, learn) -> None:
        if learn.train_iter == self.k + 1:
            next(learn.model.parameters()).data.fill_(math.nan)


def finite_files(run) -> dict:
    """{file: all finite?} for every safetensors file in the run directory."""
    return {p.relative_to(run): all(bool(torch.isfinite(t).all()) for t in load_file(str(p)).values()
                                    if t.is_floating_point())
            for p in run.rglob("*.safetensors")}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("nonfinite") / "d.txt"
    path.write_text(TEXT)
    return path


def updates_per_epoch(data) -> int:
    result = train(TrainConfig(data=str(data), epochs=1, **SMALL), log=None, progress=False)
    return len(result.learner.train_data)


@settings(max_examples=8, deadline=None, derandomize=True)
@given(k=st.integers(0, 3 * 16 - 1))
def test_a_loss_that_turns_nan_anywhere_stops_with_finite_files_only(data, tmp_path_factory, k):
    per_epoch = 16  # checked below: the data gives 16 updates per epoch
    out = tmp_path_factory.mktemp("run") / "run"
    cfg = TrainConfig(data=str(data), epochs=3, **SMALL)
    with pytest.raises(NonFiniteTraining) as stop:
        train(cfg, out=out, log=None, progress=False, cbs=[Poison(k)])
    bad = k + 1  # the first update that runs on nan weights
    if bad >= 3 * per_epoch or bad % per_epoch == 0:  # the poisoned update ended an epoch: validation sees it
        assert stop.value.epoch == k // per_epoch and stop.value.batch is None
    else:
        assert (stop.value.epoch, stop.value.batch) == divmod(bad, per_epoch)
    files = finite_files(out)
    assert all(files.values()), files
    assert "model.safetensors" not in {str(p) for p in files}  # no final weights for a failed run
    finished = stop.value.epoch
    assert bool(files) == (finished > 0)  # the checkpoint of the last finite epoch is kept


@pytest.mark.parametrize("k", [0, 5, 20])
def test_with_clipping_the_first_bad_batch_is_named_exactly(data, k):
    """Clipping hands a gradient norm to the watch as well as the loss: two values per update,
    the batch named is still the update's."""
    with pytest.raises(NonFiniteTraining) as stop:
        train(TrainConfig(data=str(data), epochs=3, clip=1.0, **SMALL), log=None, progress=False, cbs=[Poison(k)])
    assert (stop.value.epoch, stop.value.batch) == divmod(k + 1, 16)


def test_the_data_gives_sixteen_updates_per_epoch(data):
    assert updates_per_epoch(data) == 16


def test_a_diverging_run_exits_3_with_one_line(data, tmp_path, capsys):
    out = tmp_path / "div"
    code = main(["train", "--data", str(data), "--model", "lstm", "--emb-sz", "8", "--n-hidden", "8", "--bs", "4",
                 "--sl", "8", "--epochs", "3", "--lr", "1e5", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 3 and err.count("\n") == 1 and "Traceback" not in err
    assert "non-finite" in err and "epoch 0, batch" in err and "--lr" in err and "--clip" in err
    assert all(finite_files(out).values())


def test_detection_needs_no_sync_per_batch_but_stops_within_check_every(tmp_path):
    """A long epoch poisoned at update 3 stops within CHECK_EVERY updates, not at its end."""
    path = tmp_path / "long.txt"
    path.write_text(TEXT * 20)
    seen = []

    class Count(Callback):
        def after_batch(self, learn):
            seen.append(learn.train_iter)

    cfg = TrainConfig(data=str(path), epochs=1, **SMALL)
    with pytest.raises(NonFiniteTraining) as stop:
        train(cfg, log=None, progress=False, cbs=[Poison(3), Count()])
    assert (stop.value.epoch, stop.value.batch) == (0, 4)
    assert len(seen) < CHECK_EVERY + 1 < 400  # the epoch has about 400 updates


@pytest.mark.parametrize("command", [["generate", "--prompt", "the", "--n", "3"], ["eval"]])
def test_generate_and_eval_refuse_non_finite_weights(data, tmp_path, capsys, command):
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--model", "lstm", "--emb-sz", "8", "--n-hidden", "8", "--bs", "4",
                 "--sl", "8", "--epochs", "1", "--quiet", "--out", str(run)]) == 0
    weights = load_file(str(run / "model.safetensors"))
    name = sorted(weights)[0]
    weights[name][0] = math.inf
    save_file(weights, str(run / "model.safetensors"))
    capsys.readouterr()
    assert main([command[0], "--run", str(run), *command[1:]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "non-finite" in err and "Traceback" not in err


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.tuples(st.integers(1, 3), st.sampled_from([0.5, -2.0, math.nan, math.inf])),
                       min_size=1, max_size=3 * CHECK_EVERY))
def test_the_watch_names_the_first_bad_batch_and_keeps_no_tensor_alive(values):
    """Any run of observations (past the buffer's first size too) names the first batch with a
    nan or inf; and no observed tensor outlives its update (kept alive, dozens of small tensors
    between each update's big ones stopped the allocator reusing them: 25 MB more an update)."""
    from looplm.finite import FiniteWatch

    def tensors(obj) -> int:
        if torch.is_tensor(obj):
            return 1
        items = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else ()
        return sum(tensors(o) for o in items)

    watch, expected = FiniteWatch(torch.device("cpu")), None
    for batch, (n, x) in enumerate(values):
        watch.observe(torch.full((n,), 1.0).index_fill_(0, torch.tensor([n - 1]), x), batch)
        if expected is None and not math.isfinite(x):
            expected = batch
    assert tensors(vars(watch)) == 1  # its buffer, whatever the number of observations
    assert watch.first_bad() == expected
