"""The command line end to end, on tiny runs."""

import csv
import json
import os
import subprocess
import sys

import pytest

from looplm.cli.main import main
from looplm.rundir import load_run


def test_data_describe_json(capsys):
    assert main(["data", "describe", "human-numbers", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_tokens"] == 63_095 and info["vocab_size"] == 30
    assert info["top_token"] == "thousand" and info["baseline_accuracy"] == pytest.approx(0.1517, abs=5e-4)


def test_train_writes_a_run_directory_that_reloads(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--model", "lm7", "--epochs", "2", "--lr", "1e-2", "--wd", "0.1", "--bs", "32", "--sl", "16",
                 "--alpha", "2", "--beta", "1", "--seed", "0", "--set", "n_hidden=32", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "train_loss" in printed and "saved" in printed
    assert {p.name for p in out.iterdir()} >= {"config.json", "vocab.json", "model.safetensors", "metrics.csv", "curves.png"}
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 2 and float(rows[-1]["accuracy"]) > 0.3  # well above the 0.15 baseline
    run = load_run(out)
    assert run.config.model == "lm7" and run.model.config.n_hidden == 32
    assert not any(name.endswith(".tmp") for name in os.listdir(out))


def test_lr_find_writes_a_plot(tmp_path, capsys):
    png = tmp_path / "lr.png"
    assert main(["lr-find", "--model", "lm4", "--num-it", "40", "--out", str(png)]) == 0
    printed = capsys.readouterr().out
    assert "suggested learning rate" in printed and f"plot: {png}" in printed  # the path, not an object
    assert png.stat().st_size > 1000


BAD = [
    (["train", "--model", "lm9", "--out", "{tmp}/r"], "unknown model 'lm9'"),
    (["train", "--data", "nowhere", "--out", "{tmp}/r"], "unknown data 'nowhere'"),
    (["train", "--model", "lm4", "--sl", "100000", "--out", "{tmp}/r"], "too short"),
    (["train", "--model", "lm4", "--bs", "100000", "--out", "{tmp}/r"], "too short"),
    (["train", "--epochs", "0", "--out", "{tmp}/r"], "--epochs"),
    (["train", "--lr", "-1", "--out", "{tmp}/r"], "--lr"),
    (["train", "--lr", "0", "--out", "{tmp}/r"], "--lr"),
    (["train", "--model", "lm1", "--sl", "16", "--out", "{tmp}/r"], "exactly 3"),
    (["train", "--set", "n_layers=0", "--out", "{tmp}/r"], "n_layers"),
    (["train", "--set", "colour=blue", "--out", "{tmp}/r"], "unknown setting 'colour'"),
    (["train", "--out", "{tmp}/file/run"], "cannot be created"),
    (["data", "describe", "nowhere"], "unknown data"),
]


@pytest.mark.parametrize("argv, message", BAD)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    (tmp_path / "file").write_text("not a directory")
    code = main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_the_installed_command_exits_2_without_a_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "looplm", "train", "--epochs", "-3", "--out", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr and "epochs" in proc.stderr
