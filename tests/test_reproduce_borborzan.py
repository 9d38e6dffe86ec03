"""``looplm reproduce borborzan``: the notebook's layout, its view limits, and a tiny seeded run."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from looplm.cli.main import main
from looplm.games import encode, games_to_text, generate_games, stream_truth
from looplm.games.view import sample_starts, view_keys, view_limit
from looplm.reproduce.borborzan import NOTEBOOK_RUNS, SAMPLE_LEN, notebook_corpus
from looplm.reproduce.borborzan_report import merge_results, read_results, write_borborzan_report

DOCS = Path(__file__).parents[1] / "docs" / "borborzan_notebook"


def test_lmmodel1_reads_the_first_three_tokens_of_six_and_names_the_seventh():
    corpus = notebook_corpus(600)
    t = corpus.tokens
    lm1, _ = corpus.batches(4, 3, "last", group=False)
    lm2, _ = corpus.batches(4, 6, "last", group=False)
    for k in (0, 3):
        (x1, y1), (x2, y2) = lm1.batch(k), lm2.batch(k)
        for j in range(4):
            s = (k * 4 + j) * SAMPLE_LEN  # batch k, row j: sample k*bs + j, in stream order
            assert x1[j].tolist() == t[s:s + 3].tolist() and x2[j].tolist() == t[s:s + 6].tolist()
            assert y1[j] == y2[j] == t[s + 6]
    every, _ = corpus.batches(4, 6, "every")
    assert every.inputs.shape[1] % 6 == 0  # lm4-7: the usual continuing rows


def test_view_limit_equals_counting_on_a_large_sample():
    """H(T | V) from averaged exact distributions agrees with the plug-in entropy of counted
    targets on the same games, and the 3-token view is worse than the 6-token one."""
    three = view_limit(3, n_games=8000, chunks=4, seed=7)
    six = view_limit(6, n_games=8000, chunks=4, seed=7)
    ids = encode(games_to_text(generate_games(40_000, "random,random", 99)))  # other games: ~120k samples
    starts = sample_starts(len(ids), SAMPLE_LEN, SAMPLE_LEN)
    keys, inv = np.unique(view_keys(ids, starts, 3), return_inverse=True)
    counts = np.zeros((len(keys), 12))
    np.add.at(counts, (inv, ids[starts + 6]), 1)
    p = counts / counts.sum(1, keepdims=True)
    plug_in = -np.sum(counts * np.log(np.where(p > 0, p, 1))) / counts.sum()
    assert three.entropy == pytest.approx(plug_in, abs=0.01)  # the plug-in's own bias is ~0.004
    assert 1.38 < three.entropy < 1.45 and 1.15 < six.entropy < 1.21
    assert 0 < three.stderr < 0.01
    # the exact optimum at those targets bounds both from below
    truth = stream_truth(ids).probs
    optimum = -np.mean(np.log(truth[starts + 6, ids[starts + 6]]))
    assert optimum < six.entropy < three.entropy


def test_tiny_reproduction_learns_and_reports(tmp_path, capsys):
    out = tmp_path / "bz"
    code = main(["reproduce", "borborzan", "--games", "3000", "--epochs", "3", "--only", "lm1,lm4,lm7",
                 "--dropout", "scratch", "--limit-games", "8000", "--quiet", "--out", str(out)])
    assert code == 0
    report = (out / "REPORT.md").read_text()
    for title in ("LMModel1", "LMModel4", "LModel7"):
        assert f"| {title} (`" in report
    assert "4 places" in report and "H(T | V)" in report and "3 epoch(s) instead" in report
    assert (out / "loss.png").stat().st_size > 1000
    data = json.loads((out / "results.json").read_text())
    limits = data["limits"]
    losses = {r["run"]["model"]: r["losses"]["0"][-1] for r in data["runs"]}
    assert limits["lm1"]["optimal_loss"] < limits["lm1"]["view_loss"] < losses["lm1"] < limits["lm1"]["view_loss"] + 0.15
    assert limits["lm4"]["optimal_loss"] < losses["lm4"] < 0.70 and losses["lm7"] < 0.66
    assert [r["run"]["dropout"] for r in data["runs"]] == ["torch", "torch", "scratch"]
    # bits per byte: the scored targets' text, a space before each token (lm1: one target in 6)
    text = {r["run"]["model"]: r["text"] for r in data["runs"]}
    valid = notebook_corpus(3000).batches(128, 3, "last", group=False)[1]
    words = [" " + data_vocab for data_vocab in map(notebook_corpus(3000).vocab.itos.__getitem__,
                                                       valid.targets.reshape(-1).tolist())]
    assert text["lm1"] == {"tokens": len(words), "chars": len("".join(words)), "bytes": len("".join(words))}
    bpb = losses["lm1"] * len(words) / math.log(2) / len("".join(words))
    assert f"| {bpb:.4f} |" in report
    assert text["lm4"]["tokens"] > 5 * text["lm1"]["tokens"]  # every position, not one in six
    again = read_results(out)
    assert merge_results([again, again]).runs[0].losses == again.runs[0].losses


def test_the_committed_report_is_what_its_results_say(tmp_path):
    """docs/borborzan_notebook/REPORT.md renders again from its results.json, machine line
    included, with bits per byte and LModel7 set beside fastai with and without AR/TAR."""
    write_borborzan_report(read_results(DOCS), tmp_path)
    rendered = (tmp_path / "REPORT.md").read_text()
    assert rendered == (DOCS / "REPORT.md").read_text()
    assert "(1 torch threads)" in rendered  # the run's, not this process's
    assert "## LModel7 and AR/TAR" in rendered and "bits/byte" in rendered


def test_notebook_settings_are_the_notebooks():
    by = {r.model: r for r in NOTEBOOK_RUNS}
    assert [(by[m].epochs, by[m].lr) for m in ("lm1", "lm2", "lm3", "lm4", "lm5", "lm6", "lm7")] == [
        (4, 1e-3), (4, 1e-3), (4, 1e-2), (5, 3e-3), (5, 3e-3), (5, 1e-2), (5, 1e-2)]
    assert by["lm5"].n_layers == 3 and by["lm6"].n_hidden == 128 and by["lm7"].wd == 0.1
    # what the notebook's fastai ran: TextLearner's AR 2 and TAR 1 never reached its callbacks
    assert by["lm7"].alpha == by["lm7"].beta == 0 and by["lm7"].moms == (0.8, 0.7, 0.8)
    assert not any(by[m].group for m in ("lm1", "lm2", "lm3")) and by["lm1"].sl == 3


@pytest.mark.parametrize("argv, message", [
    (["--only", "lm9"], "unknown run 'lm9'"),
    (["--extra"], "--extra is for chapter12"),
    (["--games", "0"], "--games"),
    (["--precision", "fp16", "--device", "cpu"], "--precision fp16 needs a CUDA device"),  # read, not ignored
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    code = main(["reproduce", "borborzan", *argv, "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
