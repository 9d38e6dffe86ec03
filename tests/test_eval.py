"""Scoring every position of a stream, and ``looplm eval`` on a tiny bor-bor-zan run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from looplm.cli.main import main
from looplm.data.batching import stream_batches
from looplm.data.sources import DataOptions, load_corpus
from looplm.evaluate import score_stream, stream_logits
from looplm.games import encode, games_to_text, generate_games, optimal_loss
from looplm.learner import Learner
from looplm.models.registry import MODELS, build_model
from looplm.training import TrainConfig, train


@pytest.mark.parametrize("n, bs, sl, warmup", [(103, 4, 5, 3), (103, 4, 5, 0), (41, 1, 8, 2), (64, 3, 7, 100)])
def test_every_position_is_predicted_exactly_once(n, bs, sl, warmup):
    tokens = torch.randint(0, 12, (n,))
    model = build_model("lm6", 12, n_hidden=8)
    seen = torch.cat([pos.reshape(-1) for pos, _ in stream_logits(model, tokens, bs, sl, warmup)])
    assert torch.equal(seen.sort().values, torch.arange(1, n))


@pytest.mark.parametrize("name", [name for name, spec in MODELS.items() if spec.layout == "every"])
def test_a_warm_row_reads_the_tokens_before_it(name):
    """Row j's first prediction is the model run from zeros over the w tokens before it, then its first token."""
    tokens, bs, sl, w = torch.randint(0, 12, (200,)), 4, 6, 5
    model = build_model(name, 12, **MODELS[name].sizes(n_hidden=8)).eval()
    L = (199 // sl // bs) * sl
    got = {int(p): lg for pos, logits in stream_logits(model, tokens, bs, sl, w)
           for p, lg in zip(pos.reshape(-1), logits.reshape(-1, 12))}
    for j in range(1, bs):
        expect, _ = model(tokens[None, j * L - w: j * L + 1])
        torch.testing.assert_close(got[j * L + 1], expect[0, -1])
    # the tail continues the last row: its predictions are those of the whole stream read in one row
    whole, _ = model(tokens[None, (bs - 1) * L - w: -1])
    torch.testing.assert_close(got[199], whole[0, -1])


def test_cold_rows_reproduce_the_learners_validation_loss():
    tokens = torch.randint(0, 12, (500,))
    model = build_model("lm6", 12, n_hidden=8)
    valid = stream_batches(tokens, 4, 10)
    loss, accuracy = Learner(model, valid, valid, log=None, progress=False).validate()
    # score only the positions the training layout predicts (the tail is scored too, separately)
    log_p = {int(p): lp for pos, logits in stream_logits(model, tokens, 4, 10, warmup=0)
             for p, lp in zip(pos.reshape(-1), torch.log_softmax(logits, -1).reshape(-1, 12))}
    used = valid.n_targets
    mine = -sum(float(log_p[p][tokens[p]]) for p in range(1, used + 1)) / used
    assert mine == pytest.approx(loss, rel=1e-5)
    scores = score_stream(model, tokens, 4, 10, warmup=0, keep_probs=True)
    assert scores.n_predicted == 499 and scores.probs.shape == (499, 12)
    np.testing.assert_allclose(scores.probs.sum(1), 1.0)
    from_probs = -np.log(scores.probs[np.arange(499), tokens[1:].numpy()]).mean()
    assert scores.loss == pytest.approx(from_probs, rel=1e-9)
    assert scores.perplexity == pytest.approx(math.exp(scores.loss)) and scores.bits == pytest.approx(scores.loss / math.log(2))


def test_a_short_stream_is_scored_with_fewer_rows():
    scores = score_stream(build_model("lm6", 12, n_hidden=8), torch.randint(0, 12, (20,)), bs=64, sl=16)
    assert (scores.bs, scores.sl, scores.n_predicted) == (1, 16, 19)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "bz"
    cfg = TrainConfig(data="borborzan", model="lm6", epochs=1, lr=1e-2, bs=16, sl=16, seed=0,
                      data_options=DataOptions(games=300, players="random,random", seed=1),
                      model_config={"n_hidden": 16})
    train(cfg, out=out, log=None, progress=False)
    return out


def _eval(capsys, *argv) -> dict:
    assert main(["eval", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_on_a_borborzan_run(run_dir, capsys):
    r = _eval(capsys, "--run", str(run_dir))
    valid = load_corpus("borborzan", DataOptions(games=300, players="random,random", seed=1)).valid_tokens
    assert r["n_tokens"] == len(valid) and r["n_predicted"] == len(valid) - 1
    assert (r["bs"], r["sl"], r["warmup"]) == (16, 16, 256)
    assert r["perplexity"] == pytest.approx(math.exp(r["loss"]))
    assert r["bits_per_token"] == pytest.approx(r["loss"] / math.log(2))
    assert r["optimal_loss"] == pytest.approx(optimal_loss(valid.numpy()))
    assert r["loss_gap"] == pytest.approx(r["loss"] - r["optimal_loss"], abs=1e-9)
    assert r["loss_gap_pct"] == pytest.approx(100 * r["loss_gap"] / r["optimal_loss"])
    assert r["kl"] > 0 and 0 <= r["unaffordable_mass"] <= 1
    assert 0 <= r["end_precision"] <= 1 and 0 <= r["end_recall"] <= 1
    # another layout scores the same positions: only the row starts' context changes
    other = _eval(capsys, "--run", str(run_dir), "--bs", "3", "--sl", "7")
    assert (other["bs"], other["sl"]) == (3, 7) and other["loss"] == pytest.approx(r["loss"], rel=0.02)
    assert main(["eval", "--run", str(run_dir)]) == 0
    printed = capsys.readouterr().out
    assert "perplexity" in printed and "gap" in printed and "'end'" in printed


def test_eval_of_a_game_record_file(run_dir, tmp_path, capsys):
    path = tmp_path / "games.txt"
    path.write_text(games_to_text(generate_games(20, seed=5)))
    r = _eval(capsys, "--run", str(run_dir), "--file", str(path))
    assert r["data"] == str(path) and "optimal_loss" in r
    assert r["optimal_loss"] == pytest.approx(optimal_loss(encode(path.read_text())))
    # a text that is not a game record still gets its loss, and a note instead of game scores
    path.write_text("zan to zan , end . zan")
    r = _eval(capsys, "--run", str(run_dir), "--file", str(path))
    assert "loss" in r and "optimal_loss" not in r and "no bor-bor-zan scores" in r["note"]


BAD = [
    ("missing", None, "has no config.json"),
    ("empty", b"", "holds 0 token(s)"),
    ("blank", b" \n\t ", "holds 0 token(s)"),
    ("latin1", "zan to caf\xe9 ,".encode("latin-1"), "is not UTF-8"),
    ("unknown", b"zan to banana , end .", "'banana' is not in the"),
    ("nofile", None, "does not exist"),
    ("players", b"zan to zan , end . ", "impossible for players random,random"),
]


@pytest.mark.parametrize("case, content, message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_and_exit_2(run_dir, tmp_path, capsys, case, content, message):
    run, path = str(run_dir), tmp_path / "text.txt"
    if content is not None:
        path.write_bytes(content)
    argv = ["eval", "--run", run, "--file", str(path)]
    if case == "missing":
        argv = ["eval", "--run", str(tmp_path)]
    elif case == "players":
        argv += ["--players", "random,random"]  # asked for game scores: a broken record is an error
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_corrupt_weights_and_negative_warmup(run_dir, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not weights")
    assert main(["eval", "--run", str(broken)]) == 2
    assert main(["eval", "--run", str(run_dir), "--warmup", "-1"]) == 2
    err = capsys.readouterr().err
    assert "corrupt" in err and "--warmup" in err and err.count("\n") == 2


def test_eval_of_a_char_level_text_run(tmp_path, capsys):
    text = tmp_path / "story.txt"
    text.write_text("the cat sat on the mat. " * 60)
    out = tmp_path / "run"
    cfg = TrainConfig(data=str(text), model="lm6", epochs=1, bs=8, sl=16,
                      data_options=DataOptions(tokenizer="char"), model_config={"n_hidden": 8})
    train(cfg, out=out, log=None, progress=False)
    r = _eval(capsys, "--run", str(out))
    assert r["tokenizer"] == "char" and r["n_predicted"] == r["n_tokens"] - 1
    assert r["n_tokens"] == pytest.approx(0.1 * len(text.read_text()), abs=2) and "optimal_loss" not in r
    sample = tmp_path / "sample.txt"
    sample.write_text("a cat on a mat")
    r = _eval(capsys, "--run", str(out), "--file", str(sample))
    assert r["n_tokens"] == 14 and r["perplexity"] == pytest.approx(math.exp(r["loss"]))
    assert main(["eval", "--run", str(out), "--file", str(sample)]) == 0
    assert "bits/char" in capsys.readouterr().out
    sample.write_text("a dog")
    assert main(["eval", "--run", str(out), "--file", str(sample)]) == 2
    err = capsys.readouterr().err
    assert "'d'" in err and err.count("\n") == 1


@pytest.mark.parametrize("tokenizer, unit", [("char", "char"), ("word", "token"), ("bpe:300", "token")])
def test_eval_of_a_text_run_names_its_unit_and_layout(tmp_path, capsys, tokenizer, unit):
    text = tmp_path / "story.txt"
    text.write_text("the cat sat on the mat and the dog ran to the sun. " * 80)
    out = tmp_path / "run"
    cfg = TrainConfig(data=str(text), model="gru", epochs=1, bs=4, sl=8, data_options=DataOptions(tokenizer=tokenizer),
                      model_config={"emb_sz": 8, "n_hidden": 16, "n_layers": 1})
    train(cfg, out=out, log=None, progress=False)
    r = _eval(capsys, "--run", str(out), "--bs", "3", "--sl", "5")
    assert (r["bs"], r["sl"], r["tokenizer"]) == (3, 5, tokenizer)
    assert r["bits_per_token"] == pytest.approx(r["loss"] / math.log(2))
    assert ("bits_per_char" in r) == (unit == "char")
    assert main(["eval", "--run", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"bits/{unit}" in printed and f"nats/{unit}" in printed and "(bs 4, sl 8, warmup 256)" in printed
