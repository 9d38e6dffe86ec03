"""Run directories written by looplm 0.1 still evaluate, generate and resume (tests/data/run-0.1)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from looplm.cli.main import main
from looplm.resume import resume_training

OLD = Path(__file__).parent / "data" / "run-0.1"

# what looplm 0.1 printed for these runs (eval --json; generate --seed 3 on the CPU)
EVAL = {"lm4": (2.066277154867376, 0.40865156054496765), "text": (3.1172839428945416, 0.16053511202335358)}
GENERATED = {"lm4": ("one . two", "thousand two . three thousand five hundred ninety six . six thousand"),
             "text": ("First", "c.uhaWacm. npr:iszho")}


def _copy(tmp_path: Path, name: str) -> Path:
    """The old run ``name`` in ``tmp_path`` (a text run's data path pointed at the copy of tiny.txt)."""
    shutil.copy(OLD / "tiny.txt", tmp_path / "tiny.txt")
    run = tmp_path / name
    shutil.copytree(OLD / name, run)
    config = json.loads((run / "config.json").read_text())
    if config["train"]["data"].endswith("tiny.txt"):
        config["train"]["data"] = str(tmp_path / "tiny.txt")
        (run / "config.json").write_text(json.dumps(config))
    return run


@pytest.mark.parametrize("name", ["lm4", "text"])
def test_an_old_run_evaluates_as_it_did(tmp_path, capsys, name):
    run = _copy(tmp_path, f"{name}-done")
    assert main(["eval", "--run", str(run), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["loss"], out["accuracy"]) == pytest.approx(EVAL[name], rel=1e-6)


@pytest.mark.parametrize("name", ["lm4", "text"])
def test_an_old_run_generates_as_it_did(tmp_path, capsys, name):
    run = _copy(tmp_path, f"{name}-done")
    prompt, expected = GENERATED[name]
    assert main(["generate", "--run", str(run), "--prompt", prompt, "--n", "12" if name == "lm4" else "20",
                 "--seed", "3", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip() == expected


# The text model drops out, and its masks have come from a faster generator since 0.1 (the same
# distribution, other draws): after the resume its losses match the uninterrupted run's to the
# noise of other masks, not bit for bit. lm4 has no dropout and must match exactly.
RESUME_REL = {"lm4": 1e-5, "text": 5e-3}


@pytest.mark.parametrize("name", ["lm4", "text"])
def test_an_old_interrupted_run_resumes_to_the_uninterrupted_losses(tmp_path, name):
    run = _copy(tmp_path, f"{name}-interrupted")
    expected = json.loads((run / "expected_history.json").read_text())
    result = resume_training(run, log=None, progress=False)
    got = [m.as_dict() for m in result.learner.history]
    for key in ("train_loss", "valid_loss", "accuracy"):
        assert [row[key] for row in got] == pytest.approx([row[key] for row in expected], rel=RESUME_REL[name]), key
    assert (run / "model.safetensors").is_file()
