"""Resume and eval refuse data that changed since the run: any edit of the training text (a
character changed, inserted or deleted anywhere, lines reversed, the text doubled) is caught
by the run's data fingerprint, for char, word and bpe runs alike, naming the file."""

import shutil

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from looplm.cli.main import main

TEXT = "the cat sat on the mat.\nthe dog sat on the log.\na bird sang on the hill.\n" * 8
TINY = ["--model", "lstm", "--emb-sz", "8", "--n-hidden", "8", "--n-layers", "1", "--bs", "2", "--sl", "4"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """For each tokenizer: a run interrupted after one of two epochs (config says 2 epochs)."""
    root = tmp_path_factory.mktemp("changed")
    out = {}
    for tok in ("char", "word", "bpe:300"):
        folder = root / tok.replace(":", "")
        folder.mkdir()
        (folder / "d.txt").write_text(TEXT)
        assert main(["train", "--data", str(folder / "d.txt"), "--tokenizer", tok, *TINY, "--epochs", "1",
                     "--quiet", "--out", str(folder / "run")]) == 0
        config = (folder / "run" / "config.json").read_text()
        (folder / "run" / "config.json").write_text(config.replace('"epochs": 1,', '"epochs": 2,'))
        out[tok] = folder
    return out


@pytest.fixture
def copy(runs, tmp_path):
    def make(tok):
        shutil.copytree(runs[tok], tmp_path / "w")
        config = (tmp_path / "w" / "run" / "config.json").read_text()
        (tmp_path / "w" / "run" / "config.json").write_text(config.replace(str(runs[tok]), str(tmp_path / "w")))
        return tmp_path / "w"
    return make


EDITS = st.one_of(
    st.tuples(st.just("replace"), st.integers(0, len(TEXT) - 1), st.sampled_from("thecasod .\n")),
    st.tuples(st.just("insert"), st.integers(0, len(TEXT)), st.sampled_from("thecasod .\n")),
    st.tuples(st.just("delete"), st.integers(0, len(TEXT) - 1), st.just("")),
    st.tuples(st.sampled_from(["reverse", "double"]), st.just(0), st.just("")),
)


def edited(kind, at, ch):
    if kind == "replace":
        return TEXT[:at] + ch + TEXT[at + 1:]
    if kind == "insert":
        return TEXT[:at] + ch + TEXT[at:]
    if kind == "delete":
        return TEXT[:at] + TEXT[at + 1:]
    return "".join(reversed(TEXT.splitlines(keepends=True))) if kind == "reverse" else TEXT * 2


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edit=EDITS, tok=st.sampled_from(["char", "word", "bpe:300"]), command=st.sampled_from(["resume", "eval"]))
def test_any_change_of_the_data_is_refused_naming_the_file(copy, snapshot, capsys, tmp_path_factory, edit, tok, command):
    text = edited(*edit)
    if text == TEXT:
        return
    folder = copy(tok)
    try:
        (folder / "d.txt").write_text(text)
        before = snapshot(folder / "run")
        argv = ["train", "--resume", str(folder / "run"), "--quiet"] if command == "resume" else \
            ["eval", "--run", str(folder / "run")]
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, err
        assert str(folder / "d.txt") in err and err.count("\n") == 1
        assert snapshot(folder / "run") == before
    finally:
        shutil.rmtree(folder)


@pytest.mark.parametrize("tok", ["char", "bpe:300"])
def test_the_same_data_resumes_and_evaluates(copy, capsys, tok):
    folder = copy(tok)
    assert main(["eval", "--run", str(folder / "run")]) == 0
    assert main(["train", "--resume", str(folder / "run"), "--quiet"]) == 0
