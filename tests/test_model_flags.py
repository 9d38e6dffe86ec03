"""Every command that builds a model takes the same model flags (one shared definition)."""

import pytest

from looplm.cli.main import build_parser, main

FLAGS = ["--model", "--set", "--preset", "--emb-sz", "--n-hidden", "--n-layers"]


@pytest.mark.parametrize("command", [["train"], ["lr-find"]])
def test_the_model_flags_are_shared(command):
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command[0]]
    options = {s for a in sub._actions for s in a.option_strings}
    assert set(FLAGS) <= options


def test_lr_find_builds_the_model_train_would(tmp_path, capsys):
    out = tmp_path / "lr.png"
    assert main(["lr-find", "--model", "lstm", "--emb-sz", "8", "--n-hidden", "16", "--n-layers", "1",
                 "--num-it", "6", "--bs", "8", "--sl", "8", "--out", str(out)]) == 0
    assert "suggested learning rate" in capsys.readouterr().out and out.stat().st_size > 1000
    assert main(["lr-find", "--model", "lm4", "--emb-sz", "8", "--out", str(tmp_path / "x.png")]) == 2
    assert "has no setting emb_sz" in capsys.readouterr().err
