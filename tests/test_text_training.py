"""Training on a text corpus whose stream is a uint16 memmap: every strategy and every model
reads int64 pieces of it, and the stream itself is never converted."""

import math

import pytest
import torch

from looplm.callbacks import Callback, CancelFit
from looplm.cli.main import main
from looplm.data.batching import stream_batches
from looplm.data.sources import DataOptions, load_corpus
from looplm.evaluate import predict_stream, score_stream
from looplm.models.registry import MODELS, build_model
from looplm.runconfig import ChunksSpec, TBPTTSpec, VariableSpec, WindowsSpec
from looplm.tbptt import burn_in, overlapping_chunks, truncated_bptt
from looplm.training import TrainConfig, build_learner, train

TEXT = "the cat sat on the mat. the dog ran to the sun. a bird sang on the hill.\n" * 30


@pytest.fixture
def story(tmp_path):
    path = tmp_path / "story.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.mark.parametrize("strategy", [
    TBPTTSpec(k1=4, k2=8),
    TBPTTSpec(k1=4, k2=8, mode="recompute"),
    WindowsSpec(overlap=4),
    WindowsSpec(burn_in=4),
    VariableSpec(),
    ChunksSpec(),
], ids=["k1=4,k2=8", "recompute", "overlap", "burn-in", "variable-sl", "chunks"])
def test_every_strategy_trains_on_a_uint16_text_stream(story, strategy):
    cfg = TrainConfig(data=str(story), model="lstm", epochs=1, lr=1e-2, bs=4, sl=16, model_config=dict(
        emb_sz=8, n_hidden=32, n_layers=1), strategy=strategy)
    learn = train(cfg, log=None, progress=False).learner
    assert learn.train_data.inputs.dtype == torch.uint16  # the memmap view, not an int64 copy
    (row,) = learn.history
    assert math.isfinite(row.train_loss) and row.valid_loss < math.log(learn.model.config.vocab_sz)


def test_the_cli_trains_with_tbptt_and_overlap_on_a_text_file(story, tmp_path, capsys):
    for flags in (["--k1", "4", "--k2", "8"], ["--overlap", "4"]):
        out = tmp_path / f"run{len(flags)}"
        assert main(["train", "--data", str(story), "--model", "gru", "--emb-sz", "8", "--n-hidden", "16",
                     "--n-layers", "1", "--epochs", "1", "--bs", "4", "--sl", "16", "--quiet", "--out", str(out),
                     *flags]) == 0
        assert (out / "model.safetensors").is_file()
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("mode", ["stored", "recompute", "overlap", "burn"])
def test_tbptt_takes_any_integer_dtype(mode):
    """The strategies slice the whole row stream: a uint16 one gives what int64 gives."""
    tokens = torch.randint(0, 11, (4, 41))
    x, y = tokens[:, :-1], tokens[:, 1:]
    losses = []
    for dtype in (torch.int64, torch.uint16):
        torch.manual_seed(0)
        model = build_model("lstm", 11, emb_sz=4, n_hidden=8, n_layers=1, p=0.0)
        args = (model, x.to(dtype), y.to(dtype))
        steps = {"stored": lambda: truncated_bptt(*args, 4, 8, mode="stored"),
                 "recompute": lambda: truncated_bptt(*args, 4, 8, mode="recompute"),
                 "overlap": lambda: overlapping_chunks(*args, 8, 3),
                 "burn": lambda: burn_in(*args, 8, 3)}[mode]()
        losses.append(torch.stack([s.loss for s in steps]))
    assert torch.equal(*losses)


class StopAfter(Callback):
    def after_batch(self, learn):
        if learn.train_iter >= 2:
            raise CancelFit


def _tiny(name: str) -> dict:
    fields = MODELS[name].config_cls.__dataclass_fields__
    sizes = {"emb_sz": 8, "n_hid": 16, "n_hidden": 16, "n_layers": 1}
    return {k: v for k, v in sizes.items() if k in fields}


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_trains_and_scores_on_a_text_corpus(story, name):
    spec = MODELS[name]
    sl = spec.fixed_sl or 8
    cfg = TrainConfig(data=str(story), model=name, epochs=1, bs=4, sl=sl, model_config=_tiny(name))
    corpus = load_corpus(cfg.data, DataOptions())
    assert corpus.tokens.dtype == torch.uint16
    learn = build_learner(cfg, corpus, log=None, progress=False)
    learn.fit(1, 1e-3, cbs=[StopAfter()])
    assert learn.train_iter == 2
    valid = corpus.valid_tokens
    if spec.layout == "every":
        scores = score_stream(learn.model, valid, 4, sl, warmup=4)
        assert scores.n_predicted == len(valid) - 1 and math.isfinite(scores.loss)
    else:
        pred = predict_stream(learn.model, stream_batches(valid, 4, sl, "last"))
        assert pred.targets.dtype == torch.int64 and math.isfinite(pred.loss)
