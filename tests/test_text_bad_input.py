"""Bad input around a text run, from the command line: exit code 2, one line on stderr naming
the problem, no traceback, and the run directory left byte for byte as it was."""

import shutil

import pytest

from looplm.checkpoint import latest_checkpoint

CHECKPOINT = "<newest checkpoint>"
from looplm.cli.main import main

TEXT = "the cat sat on the mat. the dog ran to the sun.\n" * 40


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A char-level lstm run of one epoch on a text file, and a run of the same model on text
    with other characters."""
    root = tmp_path_factory.mktemp("runs")
    (root / "story.txt").write_text(TEXT, encoding="utf-8")
    (root / "other.txt").write_text("XYZ xyz QRS. " * 100, encoding="utf-8")
    small = ["--model", "lstm", "--emb-sz", "8", "--n-hidden", "16", "--n-layers", "1", "--bs", "4", "--sl", "16",
             "--quiet"]
    assert main(["train", "--data", str(root / "story.txt"), "--epochs", "1", *small, "--out", str(root / "run")]) == 0
    assert main(["train", "--data", str(root / "other.txt"), "--epochs", "1", *small, "--out", str(root / "other")]) == 0
    return root


@pytest.fixture
def run(runs, tmp_path):
    """A fresh copy of the run (its config says epochs=2 so that --resume has work to do)."""
    copy = tmp_path / "run"
    shutil.copytree(runs / "run", copy)
    config = (copy / "config.json").read_text()
    (copy / "config.json").write_text(config.replace('"epochs": 1,', '"epochs": 2,'))
    return copy


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def fails(argv, capsys, message, run_dir):
    before = snapshot(run_dir)
    code = main([a.format(run=run_dir) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("looplm: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert message in err, err
    assert snapshot(run_dir) == before


def test_the_fixture_resumes(run, capsys):
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert (run / "metrics.csv").read_text().count("\n") == 3


def write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("make, message", [
    (lambda d: write(d / "empty.txt", b""), "is empty"),
    (lambda d: write(d / "l.txt", "caf\xe9 au lait".encode("latin-1")), "is not UTF-8"),
    (lambda d: write(d / "docs" / "a.md", b"x").parent, "no .txt files"),
], ids=["empty", "latin-1", "no-txt"])
def test_bad_data_leaves_an_existing_run_alone(run, tmp_path, capsys, make, message):
    data = make(tmp_path)
    fails(["train", "--data", str(data), "--model", "lstm", "--out", "{run}", "--overwrite"], capsys, message, run)


def test_a_prompt_outside_the_char_vocab(run, capsys):
    fails(["generate", "--run", "{run}", "--prompt", "the Zoo"], capsys, "the character 'Z' is not in the char vocab", run)


EVAL = ["eval", "--run", "{run}"]
GENERATE = ["generate", "--run", "{run}", "--prompt", "the", "--n", "5"]
RESUME = ["train", "--resume", "{run}", "--quiet"]
MISSING = [
    (EVAL, "config.json", "no config.json"),
    (EVAL, "model.safetensors", "no model.safetensors"),
    (EVAL, "tokenizer.json", "no tokenizer.json"),
    (EVAL, "vocab.json", "no vocab.json"),
    (GENERATE, "config.json", "no config.json"),
    (GENERATE, "model.safetensors", "no model.safetensors"),
    (GENERATE, "tokenizer.json", "no tokenizer.json"),
    (RESUME, "config.json", "no config.json"),
    (RESUME, "tokenizer.json", "no tokenizer.json"),
    (RESUME, "vocab.json", "no vocab.json"),
    (RESUME, CHECKPOINT, "no checkpoint"),
    (RESUME, f"{CHECKPOINT}/model.safetensors", "no model.safetensors"),
    (RESUME, f"{CHECKPOINT}/trainer.json", "no trainer.json"),
]


@pytest.mark.parametrize("argv, name, message", MISSING, ids=[f"{a[0]}-{n}" for a, n, _ in MISSING])
def test_a_run_directory_missing_a_file(run, capsys, argv, name, message):
    path = run / name.replace(CHECKPOINT, latest_checkpoint(run).name)
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    fails(argv, capsys, message, run)


WEIGHTS = [(EVAL, "model.safetensors"), (GENERATE, "model.safetensors"), (RESUME, f"{CHECKPOINT}/model.safetensors")]


@pytest.mark.parametrize("argv, weights", WEIGHTS, ids=["eval", "generate", "resume"])
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_weights(run, capsys, argv, weights, damage):
    path = run / weights.replace(CHECKPOINT, latest_checkpoint(run).name)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2] if damage == "truncated" else b"\x93NUMPY" + bytes(range(256)) * 8)
    fails(argv, capsys, "corrupt" if argv is not RESUME else "damaged", run)


@pytest.mark.parametrize("argv, weights", WEIGHTS, ids=["eval", "generate", "resume"])
def test_weights_of_another_vocab(runs, run, capsys, argv, weights):
    """The other run's model is the same lstm, trained on text with other characters."""
    ckpt = latest_checkpoint(run).name
    shutil.copy(runs / "other" / weights.replace(CHECKPOINT, ckpt), run / weights.replace(CHECKPOINT, ckpt))
    fails(argv, capsys, "the weights were trained with a vocab of 13 tokens, the run's vocab has 18", run)


def test_a_tokenizer_of_another_vocab(runs, run, capsys):
    shutil.copy(runs / "other" / "tokenizer.json", run / "tokenizer.json")
    for argv in (EVAL, GENERATE, RESUME):
        fails(argv, capsys, "differ", run)


@pytest.mark.parametrize("argv", [EVAL, RESUME], ids=["eval", "resume"])
def test_the_data_changed_since_the_run(runs, run, tmp_path, capsys, argv):
    """The run's text gained characters: its vocab is not the run's any more."""
    story = tmp_path / "story.txt"
    story.write_text("QUICK! " + TEXT, encoding="utf-8")
    config = (run / "config.json").read_text()
    (run / "config.json").write_text(config.replace(str(runs / "story.txt"), str(story)))
    fails(argv, capsys, "is not the text the run was trained on: its char vocab is now 24 tokens "
                        "(new: '!', 'C', 'I', 'K', 'Q' ...), the run's is 18", run)


def test_eval_of_a_file_outside_the_vocab(run, tmp_path, capsys):
    sample = tmp_path / "sample.txt"
    sample.write_text("the cat sat on a bike", encoding="utf-8")
    message = "the characters 'b', 'i', 'k' are not in the char vocab"
    fails(["eval", "--run", "{run}", "--file", str(sample)], capsys, message, run)
