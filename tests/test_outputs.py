"""A command that refuses changes nothing that existed, and leaves no folder behind.

The promise is tested as a property: for every refused command below, run in a folder that
holds a finished run, a data file, a non-run folder and a plot, the folder is byte for byte
what it was (no file written, removed or replaced, no empty folder left)."""

import os
import shutil

import pytest

from looplm.cli.main import main
from looplm.errors import LooplmError
from looplm.outputs import PNG, RUN, TEXT, Output

TEXT_DATA = "the cat sat on the mat. the dog sat on the log.\n" * 40
TINY = ["--model", "lstm", "--emb-sz", "8", "--n-hidden", "8", "--n-layers", "1", "--bs", "4", "--sl", "8",
        "--epochs", "1", "--quiet"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A folder with d.txt, run/ (a finished run of it), thesis/ (not a run), lr.png."""
    root = tmp_path_factory.mktemp("finished")
    (root / "d.txt").write_text(TEXT_DATA)
    assert main(["train", "--data", str(root / "d.txt"), *TINY, "--out", str(root / "run")]) == 0
    (root / "thesis" / "checkpoint").mkdir(parents=True)
    (root / "thesis" / "checkpoint" / "thesis.tex").write_text("years of work")
    (root / "p" / "checkpoint").mkdir(parents=True)
    (root / "p" / "checkpoint" / "thesis.tex").write_text("years of work")
    (root / "empty.txt").write_text("")
    return root


@pytest.fixture
def folder(finished, tmp_path):
    shutil.copytree(finished, tmp_path / "w", symlinks=True)
    return tmp_path / "w"


REFUSED = [
    # an existing run is not replaced without --overwrite, and not at all by a command that then refuses
    ["train", "--data", "{d}/d.txt", *TINY, "--out", "{d}/run"],
    ["train", "--data", "{d}/d.txt", *TINY, "--alpha", "2", "--model", "lm6", "--out", "{d}/run", "--overwrite"],
    ["train", "--data", "{d}/d.txt", *TINY, "--wd", "nan", "--out", "{d}/run", "--overwrite"],
    ["train", "--data", "{d}/d.txt", *TINY, "--bs", "1000000000", "--out", "{d}/run", "--overwrite"],
    # --overwrite replaces a looplm run only: never a folder that is not one, never a file
    ["train", "--data", "{d}/d.txt", *TINY, "--out", "{d}/thesis"],
    ["train", "--data", "{d}/d.txt", *TINY, "--out", "{d}/thesis", "--overwrite"],
    ["train", "--data", "{d}/d.txt", *TINY, "--out", "{d}/p", "--overwrite"],
    ["train", "--data", "{d}/d.txt", *TINY, "--out", "{d}/d.txt", "--overwrite"],
    # no output equal to or inside an input, or holding one
    ["train", "--data", "{d}/thesis", *TINY, "--out", "{d}/thesis/run"],
    ["train", "--data", "{d}/run/vocab.json", *TINY, "--out", "{d}/run", "--overwrite"],
    ["lr-find", "--data", "{d}/d.txt", "--model", "lstm", "--out", "{d}/d.txt"],
    ["lr-find", "--data", "{d}/d.txt", "--model", "lstm", "--out", "{d}/d.txt", "--overwrite"],
    ["lr-find", "--data", "{d}/d.txt", "--model", "lstm", "--out", "{d}/run"],
    ["data", "export", "{d}/d.txt", "--tokenizer", "word", "--out", "{d}/d.txt"],
    ["data", "export", "{d}/d.txt", "--tokenizer", "word", "--out", "{d}/d.txt", "--overwrite"],
    ["data", "export", "{d}/d.txt", "--out", "{d}/run"],
    ["reproduce", "chapter12", "--out", "{d}/run", "--overwrite", "--epochs", "1"],
    # refusals that used to leave an empty --out (and its parents) behind
    ["train", "--data", "{d}/empty.txt", *TINY, "--out", "{d}/new/deeper/run"],
    ["train", "--data", "{d}/d.txt", *TINY, "--seed", "-1", "--out", "{d}/new/run"],
    ["train", "--data", "{d}/d.txt", *TINY, "--sl", "100000", "--out", "{d}/new/run"],
    ["train", "--data", "{d}/d.txt", *TINY, "--model", "lm6", "--alpha", "2", "--out", "{d}/new/run"],
    ["data", "export", "{d}/empty.txt", "--out", "{d}/new/out.txt"],
    ["lr-find", "--data", "{d}/d.txt", "--model", "lm9", "--out", "{d}/new/lr.png"],
    ["lr-find", "--data", "{d}/d.txt", "--model", "lstm", "--num-it", "1", "--out", "{d}/new/lr.png"],
    ["lr-find", "--data", "{d}/d.txt", "--model", "lstm", "--end-lr", "-1", "--out", "{d}/new/lr.png"],
]


@pytest.mark.parametrize("argv", REFUSED, ids=lambda a: " ".join(a).replace("{d}/", ""))
def test_a_refused_command_leaves_the_folder_byte_identical(folder, snapshot, capsys, argv):
    before = snapshot(folder)
    code = main([a.format(d=folder) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert snapshot(folder) == before


def test_overwrite_replaces_a_previous_run(folder, capsys):
    old = (folder / "run" / "model.safetensors").read_bytes()
    argv = ["train", "--data", str(folder / "d.txt"), *TINY, "--seed", "1", "--out", str(folder / "run")]
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    assert (folder / "run" / "model.safetensors").read_bytes() != old


def test_the_message_names_overwrite(folder, capsys):
    main(["train", "--data", str(folder / "d.txt"), *TINY, "--out", str(folder / "run")])
    err = capsys.readouterr().err
    assert "already exists and is not empty" in err and "--overwrite" in err


def test_an_empty_folder_is_a_fine_out(folder, capsys):
    (folder / "fresh").mkdir()
    assert main(["train", "--data", str(folder / "d.txt"), *TINY, "--out", str(folder / "fresh")]) == 0
    assert (folder / "fresh" / "model.safetensors").is_file()


@pytest.mark.parametrize("kind", [RUN, PNG, TEXT])
def test_a_refusal_inside_writing_removes_the_folders_it_created(tmp_path, snapshot, kind):
    before = snapshot(tmp_path)
    out = Output(tmp_path / "a" / "b" / "out", kind)
    with pytest.raises(LooplmError), out.writing():
        raise LooplmError("refused late")
    assert snapshot(tmp_path) == before


def test_overwrite_of_a_plot_needs_a_png(tmp_path):
    (tmp_path / "notes.png").write_text("not a plot")
    with pytest.raises(LooplmError, match="not a PNG plot"):
        Output(tmp_path / "notes.png", PNG, overwrite=True)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_every_file_of_a_run_honours_the_umask(folder, umask, capsys):
    old = os.umask(umask)
    try:
        assert main(["train", "--data", str(folder / "d.txt"), *TINY, "--out", str(folder / "new" / "run")]) == 0
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (folder / "new").rglob("*")}
    for p in (folder / "new").rglob("*"):
        assert modes[p.name] == (0o777 if p.is_dir() else 0o666) & ~umask, p
