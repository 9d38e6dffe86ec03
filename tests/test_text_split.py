"""``--valid-pct`` cuts the text at the nearest word start, for every tokenizer."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from looplm.data.text import WHITESPACE, TextSource, load_text_corpus

WORDS = ["alpha", "beta", "gamma", "delta", "épsilon", "zêta", "η", "theta", "iota", "kappa", "λ", "mu"]


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


@pytest.mark.parametrize("tokenizer", ["char", "word", "bpe:300"])
def test_a_word_tokenizer_never_learns_half_a_word(tmp_path, tokenizer):
    """The 12-word corpus that used to give the word token "al" (alpha cut in two)."""
    text = " ".join(WORDS[:1] * 3 + WORDS[:9]) + " alpha beta"
    for pct in (0.1, 0.2, 0.3, 0.5):
        c = load_text_corpus(write(tmp_path / "t.txt", text), tokenizer, valid_pct=pct)
        train = c.tokenizer.decode(c.tokens.tolist())
        valid = c.tokenizer.decode(c.valid_tokens.tolist())
        if tokenizer == "word":  # whitespace-separated words, decoded with one space between
            assert set(c.vocab.itos) - {"<unk>", "<sep>"} <= set(WORDS)
            assert text.startswith(train + " ")
        else:
            assert text.startswith(train)  # (valid may hold text the train part never saw: <unk>)
            assert train.endswith(" ") and not valid.startswith(" ")  # the cut falls at a word start


@settings(max_examples=60, deadline=None)
@given(words=st.lists(st.sampled_from(WORDS + ["", "\n", "a\tb"]), min_size=2, max_size=40),
       frac=st.floats(0.01, 0.99))
def test_the_cut_is_the_nearest_word_start(tmp_path_factory, words, frac):
    text = " ".join(words).encode("utf-8")
    if len(text) < 2:
        return
    path = tmp_path_factory.mktemp("s") / "t.txt"
    path.write_bytes(text)
    src = TextSource.open(path)
    pos = int(len(text) * frac)
    cut = src.word_start(pos)
    starts = [p for p in range(1, len(text)) if text[p - 1] in WHITESPACE and text[p] not in WHITESPACE]
    if starts:
        assert cut == min(starts, key=lambda p: (abs(p - pos), p))
    else:  # one long word: the character boundary at or after pos
        assert cut >= pos and (cut == len(text) or text[cut] & 0xC0 != 0x80)


def test_a_document_boundary_is_a_word_start(tmp_path):
    write(tmp_path / "d" / "a.txt", "x" * 60)
    write(tmp_path / "d" / "b.txt", "y" * 40)
    src = TextSource.open(tmp_path / "d")
    assert src.word_start(90) == 60 and src.word_start(55) == 60
