"""``looplm reproduce chapter12 --extra``: LModel6 with PyTorch's GRU and the from-scratch GRU and LSTM."""

import json

import pytest

from looplm.cli.main import main
from looplm.reproduce.chapter12 import CHAPTER_RECIPES, EXTRA_RECIPES, select_recipes

LM6_FAMILY = "lm6,lm6-gru,lm6-scratch-gru,lm6-scratch-lstm"


def test_extra_runs_follow_the_chapter_with_lm6s_settings():
    runs = select_recipes(extra=True)
    extras = ["lm6-gru", "lm6-scratch-gru", "lm6-scratch-lstm"]
    assert [r.model for r in runs] == [r.model for r in CHAPTER_RECIPES] + extras
    lm6 = next(r for r in CHAPTER_RECIPES if r.model == "lm6")
    for recipe in EXTRA_RECIPES:
        assert recipe.extra and recipe.book is None and recipe.fastai_cpu is None
        assert (recipe.epochs, recipe.lr, recipe.sl, recipe.wd, recipe.moms) == (lm6.epochs, lm6.lr, lm6.sl, lm6.wd, lm6.moms)
        assert recipe.config(0, "cpu").model_config == lm6.config(0, "cpu").model_config
    assert select_recipes() == CHAPTER_RECIPES
    assert [r.model for r in select_recipes(True, ["lm6-scratch-gru", "lm6"])] == ["lm6", "lm6-scratch-gru"]


def test_extra_writes_the_rows_beside_lmodel6(tmp_path, capsys):
    out = tmp_path / "ch12"
    code = main(["reproduce", "chapter12", "--extra", "--only", LM6_FAMILY, "--epochs", "1", "--quiet",
                 "--out", str(out)])
    assert code == 0
    assert "all 4 runs in" in capsys.readouterr().out
    report = (out / "REPORT.md").read_text()
    for title, name in [("LModel6", "lm6"), ("LModel6 GRU", "lm6-gru"), ("LModel6 scratch GRU", "lm6-scratch-gru"),
                        ("LModel6 scratch LSTM", "lm6-scratch-lstm")]:
        assert f"| {title} (`{name}`) |" in report  # the results table
        assert f"| {title} | 12,288 |" in report  # the error analysis
    assert "## Compare with PyTorch's GRU" in report and "start from the same weights" in report
    assert "1 epoch instead of the chapter's" in report
    assert (out / "accuracy.png").stat().st_size > 1000
    data = json.loads((out / "results.json").read_text())
    assert set(data["models"]) == set(LM6_FAMILY.split(","))
    assert all(twin["equal"] for twin in data["same_init"]) and len(data["same_init"]) == 2
    finals = {name: m["curves"]["0"][-1] for name, m in data["models"].items()}
    # equal starts and equal functions: only float rounding between the twins
    assert finals["lm6-scratch-gru"] == pytest.approx(finals["lm6-gru"], abs=2e-3)
    assert finals["lm6-scratch-lstm"] == pytest.approx(finals["lm6"], abs=2e-3)
    assert 0 < data["models"]["lm6-gru"]["errors"]["error_share_after_boundary"] < 1
    bpb = {name: m["bits_per_byte"]["0"] for name, m in data["models"].items()}
    assert bpb["lm6-scratch-lstm"] == pytest.approx(bpb["lm6"], abs=5e-3)  # twins score the same text
    # a uniform guess over the 30 tokens is about 1 bit per byte (4.9 bits over ~5 bytes a word)
    assert all(0.05 < b < 0.7 for b in bpb.values())
    assert f"| {bpb['lm6']:.3f} |" in report


@pytest.mark.parametrize("argv, message", [
    (["--only", "lm6-gru"], "an extra run: add --extra"),
    (["--extra", "--only", "lm9"], "unknown run 'lm9'"),
    (["--only", ","], "--only names no run"),
    (["--epochs", "0"], "--epochs"),
])
def test_bad_selection_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    code = main(["reproduce", "chapter12", *argv, "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
