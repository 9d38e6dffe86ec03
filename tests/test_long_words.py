"""Hostile text: a word of any length is read the same whatever the block size, and no BPE
pre-token is longer than MAX_WORD characters (so BPE training is linear in the text)."""

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from looplm.data import text as text_module
from looplm.data.text import TextSource
from looplm.data.tokenize import MAX_WORD, fit_tokenizer, words

WORD = st.text("abcé", min_size=1, max_size=3 * MAX_WORD + 7)
SPACE = st.sampled_from([" ", "  ", "\n", " \n ", "\t", "\x1c", "\u3000", " \x85"])  # Python's whitespace, all of it
TEXTS = st.lists(st.tuples(WORD, SPACE), min_size=1, max_size=6).map(
    lambda parts: "".join(w + s for w, s in parts)) | st.text("xy", min_size=1, max_size=5 * MAX_WORD)


def read_in_blocks(path, block, monkeypatch) -> list[str]:
    monkeypatch.setattr(text_module, "BLOCK", block)
    return [piece for _, piece, _ in TextSource.open(path).read()]


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXTS, block=st.integers(1, 2000), spec=st.sampled_from(["char", "word", "bpe:280"]))
def test_tokens_do_not_depend_on_the_block_size(tmp_path, monkeypatch, text, block, spec):
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    pieces = read_in_blocks(path, block, monkeypatch)
    assert "".join(pieces) == text
    tok = fit_tokenizer(spec, [text])
    whole = list(tok.encode(text))
    assert [i for piece in pieces for i in tok.encode(piece)] == whole


def test_a_word_longer_than_a_megabyte(tmp_path, monkeypatch):
    """A 1.1 MB word read in 1 MB blocks: pieces of MAX_WORD characters, as read whole."""
    text = "start " + "z" * (1_100_000) + " end\n"
    path = tmp_path / "t.txt"
    path.write_text(text)
    pieces = read_in_blocks(path, 1 << 20, monkeypatch)
    assert len(pieces) == 2 and "".join(pieces) == text
    assert [w for p in pieces for w in words(p)] == words(text)
    assert max(map(len, words(text))) == MAX_WORD


@pytest.mark.parametrize("text", ["q" * 100_000, "ab" * 50_000 + " x", "é" * 70_000])
def test_no_bpe_pre_token_is_longer_than_max_word(text):
    tok = fit_tokenizer("bpe:270", [text[:3000]])
    pieces = tok.hf.pre_tokenizer.pre_tokenize_str(text)
    assert max(len(p) for p, _ in pieces) <= 2 * MAX_WORD  # byte-level: at most 2 symbols per character here
