"""Mixed precision: bf16 (and fp16 with a gradient scaler) trains every model family and
strategy, weights and checkpoints stay float32, and a run resumes in another precision."""

import json

import pytest
import torch
from safetensors.torch import load_file

from looplm import precision as prec
from looplm.callbacks import ARTAR, GradientClip
from looplm.checkpoint import TrainingInterrupted, latest_checkpoint
from looplm.cli.main import main
from looplm.data import load_corpus
from looplm.errors import LooplmError
from looplm.learner import Learner
from looplm.models import build_model
from looplm.precision import AUTO_MIN_DECODER, AUTO_MIN_HIDDEN, Precision, resolve_precision
from looplm.strategies import TBPTT, Chunks, VariableChunks, Windows
from looplm.resume import resume_training
from looplm.training import TrainConfig, train

from test_resume import CtrlCAt


@pytest.fixture(scope="module")
def corpus():
    return load_corpus("human-numbers")


def fit(corpus, name, precision, epochs=2, lr=1e-2, strategy=None, cbs=(), sl=16, **config):
    torch.manual_seed(0)
    model = build_model(name, len(corpus.vocab), **config)
    train_b, valid_b = corpus.batches(bs=32, sl=sl, layout=model.layout)
    learn = Learner(model, train_b, valid_b, log=None, progress=False, precision=precision, strategy=strategy)
    learn.fit_one_cycle(epochs, lr, cbs=list(cbs))
    return learn


# Every model family, each in bf16: two epochs of Human Numbers must beat the most-common-token
# baseline (0.15) by far. Each bound is about 0.05 below what fp32 reaches with the same seed
# (lm1 0.355, lm3 0.438, lm4 0.468, lm5 0.323, lm6 0.473, lm6-gru 0.425, scratch GRU 0.425,
# scratch LSTM 0.473 on both paths, awd-lstm 0.518, lstm 0.422, gru 0.475).
FAMILIES = [
    ("lm1", dict(n_hidden=32), 3, 0.30),
    ("lm3", dict(n_hidden=32), 3, 0.35),
    ("lm4", dict(n_hidden=32), 16, 0.41),
    ("lm5", dict(n_hidden=32), 16, 0.27),
    ("lm6", dict(n_hidden=32), 16, 0.39),
    ("lm6-gru", dict(n_hidden=32), 16, 0.37),
    ("lm6-scratch-gru", dict(n_hidden=32), 16, 0.37),
    ("lm6-scratch-lstm", dict(n_hidden=32), 16, 0.36),
    ("lm6-scratch-lstm", dict(n_hidden=32, fast=False), 16, 0.39),  # the teaching path
    ("awd-lstm", dict(emb_sz=32, n_hid=32, n_layers=2, weight_p=0.1, emb_init="torch"), 16, 0.46),
    ("lstm", dict(emb_sz=16, n_hidden=32, p=0.0), 16, 0.37),
    ("gru", dict(emb_sz=16, n_hidden=32, p=0.0, scratch=True), 16, 0.42),
]


@pytest.mark.parametrize("name, config, sl, bound", FAMILIES, ids=[f"{f[0]}{'' if f[1].get('fast', 1) else '-slow'}"
                                                                   for f in FAMILIES])
def test_bf16_training_of_every_model_family_learns(corpus, name, config, sl, bound):
    learn = fit(corpus, name, "bf16", lr=3e-3 if name.startswith("lm1") else 1e-2, sl=sl, **config)
    last = learn.history[-1]
    assert last.accuracy > bound, f"{name}: {last.accuracy:.3f}"
    assert last.valid_loss < 2.1
    # master weights and gradients' target stay float32
    assert {p.dtype for p in learn.model.parameters()} == {torch.float32}
    assert all(v.dtype == torch.float32 for s in learn.opt.state.values() for v in s.values() if v.is_floating_point())


def test_bf16_lm7_with_ar_tar_and_clipping_is_close_to_fp32(corpus):
    """The same seeded run in fp32 and bf16: bf16's losses follow fp32's closely."""
    cbs = lambda: [ARTAR(2.0, 1.0), GradientClip(0.5)]  # noqa: E731
    runs = {p: fit(corpus, "lm7", p, epochs=3, cbs=cbs(), n_hidden=64) for p in ("fp32", "bf16")}
    fp32, bf16 = runs["fp32"].history[-1], runs["bf16"].history[-1]
    assert bf16.accuracy > 0.6 and fp32.accuracy > 0.6
    assert abs(bf16.valid_loss - fp32.valid_loss) < 0.15


@pytest.mark.parametrize("strategy", [Chunks(), TBPTT(4, 16, "stored"), TBPTT(8, 8, "recompute"),
                                      Windows(16, overlap=8), Windows(16, burn=4), VariableChunks(seed=0)],
                         ids=["chunks", "tbptt-stored", "tbptt-recompute", "windows", "burn-in", "variable-sl"])
def test_bf16_trains_with_every_strategy_and_ar_tar(corpus, strategy):
    learn = fit(corpus, "lm7", "bf16", strategy=strategy, cbs=[ARTAR(2.0, 1.0), GradientClip(1.0)], n_hidden=32)
    assert learn.history[-1].accuracy > 0.4


def test_bf16_forward_returns_float32_logits_and_state(corpus):
    model = build_model("lstm", len(corpus.vocab), emb_sz=16, n_hidden=32).eval()
    p = Precision("bf16", "cpu")
    x = torch.randint(0, len(corpus.vocab), (4, 8))
    logits, (h, c) = p.forward(model, x)
    assert logits.dtype == h.dtype == c.dtype == torch.float32
    ref, _ = model(x)
    # the same function, computed in bf16 (8 bits of mantissa)
    assert (logits - ref).abs().max() < 0.05 * ref.abs().max()
    assert p.wrap(model) is not model and Precision().wrap(model) is model


# -- fp16: a gradient scaler (exercised on the CPU here; the CLI allows fp16 on CUDA only) --
@pytest.mark.parametrize("strategy", [Chunks(), TBPTT(8, 16, "stored")], ids=["chunks", "tbptt"])
def test_fp16_with_a_gradient_scaler_learns_and_reports_unscaled_losses(corpus, strategy):
    fp16 = Precision("fp16", "cpu")  # oneDNN has no fp16 LSTM on a CPU: the from-scratch layers run it
    learn = fit(corpus, "lm6-scratch-lstm", fp16, strategy=strategy, cbs=[GradientClip(1.0)], n_hidden=32)
    first, last = learn.history[0], learn.history[-1]
    assert last.accuracy > 0.4
    assert 0 < last.train_loss < first.train_loss < 4  # the reported loss is not the scaled one
    assert fp16.state_dict()["scale"] > 1  # the scaler ran
    assert {p.dtype for p in learn.model.parameters()} == {torch.float32}


def test_fp16_skips_a_step_whose_gradients_overflow():
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    fp16 = Precision("fp16", "cpu")
    before = model.weight.detach().clone()
    fp16.backward(model(torch.full((1, 3), float("inf"))).sum())
    fp16.unscale(opt)
    fp16.unscale(opt)  # a second call in the same step is harmless
    fp16.step(opt)
    assert torch.equal(model.weight, before)
    assert fp16.state_dict()["scale"] == 2.0**16 * 0.5  # the scale backed off


# -- resolving --precision ----------------------------------------------------------
def test_auto_picks_bf16_only_for_wide_models_on_bf16_hardware(monkeypatch):
    narrow, wide = build_model("lm6", 30, n_hidden=64), build_model("lstm", 30, n_hidden=AUTO_MIN_HIDDEN)
    monkeypatch.setattr(prec, "cpu_has_bf16", lambda: True)
    assert resolve_precision("auto", "cpu", wide).name == "bf16"
    chosen = resolve_precision("auto", "cpu", narrow)
    assert chosen.name == "fp32" and "64 units" in chosen.reason
    assert resolve_precision("auto", "cpu", build_model("awd-lstm", 30)).name == "bf16"  # n_hid 1152
    # narrow, but a word-level decoder: 10,000 x 200 weights
    word = build_model("lstm", 10_000, emb_sz=200, n_hidden=200, tie_weights=True)
    chosen = resolve_precision("auto", "cpu", word)
    assert chosen.name == "bf16" and "2,000,000 weights" in chosen.reason
    edge = AUTO_MIN_DECODER // 64
    assert resolve_precision("auto", "cpu", build_model("lm6", edge, n_hidden=64)).name == "bf16"
    assert resolve_precision("auto", "cpu", build_model("lm6", edge - 1, n_hidden=64)).name == "fp32"
    monkeypatch.setattr(prec, "cpu_has_bf16", lambda: False)
    chosen = resolve_precision("auto", "cpu", wide)
    assert chosen.name == "fp32" and "no bf16" in chosen.reason
    assert resolve_precision("bf16", "cpu", narrow).name == "bf16"  # asked for: always granted on a CPU


@pytest.mark.parametrize("flags, units", [
    ("flags\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile", "AMX-BF16"),
    ("flags\t: fpu avx512f avx512_bf16", "AVX512-BF16"),
    ("flags\t: fpu avx512f avx512bw avx512_vnni", None),  # AVX-512 alone: bf16 would be emulated
    (None, None),  # no /proc/cpuinfo (not Linux): looplm does not guess
])
def test_the_cpu_bf16_units_are_read_from_its_flags(monkeypatch, flags, units):
    class FakePath:
        def __init__(self, *_):
            pass

        def read_text(self, **_):
            if flags is None:
                raise FileNotFoundError("/proc/cpuinfo")
            return flags

    monkeypatch.setattr(prec, "Path", FakePath)
    assert prec.cpu_bf16_units.__wrapped__() == units


def test_fp16_on_a_cpu_and_unknown_precisions_are_refused():
    with pytest.raises(LooplmError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(LooplmError, match="unknown precision"):
        resolve_precision("int8", "cpu")


def test_cli_refuses_fp16_on_a_cpu_in_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--model", "lm6", "--epochs", "1", "--precision", "fp16", "--device", "cpu",
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "fp16 needs a CUDA device" in err
    assert not out.exists()


# -- runs, checkpoints and resume ---------------------------------------------------
SMALL = dict(model="lm7", epochs=2, lr=1e-2, wd=0.1, bs=32, sl=16, seed=0, alpha=2.0, beta=1.0,
             moms=(0.8, 0.7, 0.8), model_config={"n_hidden": 32})


def checkpoint_dtypes(run) -> set:
    newest = latest_checkpoint(run)
    tensors = {**load_file(str(newest / "model.safetensors")), **load_file(str(newest / "trainer.safetensors"))}
    return {t.dtype for k, t in tensors.items() if not k.startswith("rng") and t.is_floating_point()}


@pytest.mark.parametrize("first, then", [("bf16", "fp32"), ("fp32", "bf16")])
def test_a_run_resumes_in_the_other_precision_from_float32_checkpoints(tmp_path, first, then):
    per_epoch = len(train(TrainConfig(**{**SMALL, "epochs": 1}), log=None, progress=False).learner.train_data)
    with pytest.raises(TrainingInterrupted):
        train(TrainConfig(**SMALL, precision=first), out=tmp_path, log=None, progress=False,
              cbs=[CtrlCAt(per_epoch + 5)])
    assert checkpoint_dtypes(tmp_path) == {torch.float32}
    assert json.loads((tmp_path / "config.json").read_text())["training"]["precision"] == first
    resumed = resume_training(tmp_path, log=None, progress=False, precision=then)
    assert resumed.learner.precision.name == then
    assert resumed.learner.history[-1].accuracy > 0.4
    assert json.loads((tmp_path / "config.json").read_text())["training"]["precision"] == then
    assert {t.dtype for t in load_file(str(tmp_path / "model.safetensors")).values()} == {torch.float32}


def test_config_records_what_auto_chose_and_resume_keeps_it(tmp_path, monkeypatch):
    monkeypatch.setattr(prec, "cpu_has_bf16", lambda: True)
    lines = []
    cfg = TrainConfig(**{**SMALL, "epochs": 1, "model": "lstm", "alpha": 0.0, "beta": 0.0,
                         "model_config": {"n_hidden": AUTO_MIN_HIDDEN, "emb_sz": 16, "n_layers": 1}},
                      precision="auto")
    train(cfg, out=tmp_path, log=lines.append, progress=False)
    assert any(line.startswith("precision auto -> bf16") for line in lines)
    assert json.loads((tmp_path / "config.json").read_text())["training"]["precision"] == "bf16"


def test_eval_and_generate_run_a_bf16_run_in_bf16_or_as_asked(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", "lm6", "--set", "n_hidden=32", "--epochs", "2", "--bs", "32",
                 "--precision", "bf16", "--quiet", "--out", str(out)]) == 0
    losses = {}
    for asked in ([], ["--precision", "fp32"]):
        assert main(["eval", "--run", str(out), "--json", *asked]) == 0
        losses[tuple(asked)] = json.loads(capsys.readouterr().out)["loss"]
    bf16, fp32 = losses[()], losses[("--precision", "fp32")]
    assert bf16 != fp32 and abs(bf16 - fp32) < 0.02
    assert main(["generate", "--run", str(out), "--prompt", "one", "--n", "5", "--seed", "0"]) == 0
    assert len(capsys.readouterr().out.split()) >= 1
