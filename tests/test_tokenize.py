"""Tokenizers: hand-derived ids, round trips, unknowns, saving with a run."""

import json

import numpy as np
import pytest

from looplm.data.tokenize import (SEP, UNK, fit_tokenizer, load_tokenizer, parse_spec, safe_cut,
                                  save_tokenizer, split_safely, tokenizer_from_dict)
from looplm.data.vocab import Vocab
from looplm.errors import LooplmError

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 20


def test_char_ids_by_hand():
    tok = fit_tokenizer("char", ["abba\n"])
    assert tok.vocab.itos == (UNK, SEP, "\n", "a", "b")  # specials, then code point order
    assert tok.encode("ab\nb").tolist() == [3, 4, 2, 4]
    assert tok.decode([4, 3]) == "ba"


def test_word_keeps_the_n_commonest():
    tok = fit_tokenizer("word:2", ["a b a c a b"])
    assert tok.vocab.itos == (UNK, SEP, "a", "b")
    assert tok.encode("b  a\nc").tolist() == [3, 2, 0]  # c was cut: <unk>
    assert tok.decode([2, 3]) == "a b"


@pytest.mark.parametrize("spec", ["char", "word", "bpe:300"])
def test_round_trip(spec):
    tok = fit_tokenizer(spec, [TEXT])
    ids = tok.encode(TEXT)
    assert ids.dtype == np.int64 and ids.min() >= 0 and ids.max() < len(tok.vocab)
    expected = " ".join(TEXT.split()) if spec == "word" else TEXT
    assert tok.decode(ids) == expected
    again = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))
    assert again.vocab == tok.vocab and np.array_equal(again.encode(TEXT), ids)
    assert tok.sep_id is not None


def test_bpe_merges_and_reads_any_text():
    tok = fit_tokenizer("bpe:300", [TEXT])
    assert len(tok.vocab) == 300
    assert len(tok.encode(TEXT)) < len(TEXT) / 2  # merges learned on repeated text
    assert tok.decode(tok.encode("naïve — ünïcode")) == "naïve — ünïcode"  # byte level: no unknowns


@pytest.mark.parametrize("spec, text, what", [("char", "FQ", "'Q'"), ("word", "speak. loudly", "'loudly'")])
def test_unknowns_are_unk_or_an_error(spec, text, what):
    tok = fit_tokenizer(spec, [TEXT])
    unk = tok.vocab.stoi[UNK]
    assert unk in tok.encode(text).tolist()
    with pytest.raises(LooplmError, match=what):
        tok.encode(text, strict=True)


def test_a_vocab_without_unk_refuses_unknowns():
    from looplm.data.tokenize import WordTokenizer

    tok = WordTokenizer(Vocab(("one", "two", ".")))
    assert tok.encode("one . two").tolist() == [0, 2, 1]
    with pytest.raises(LooplmError, match="'three'"):
        tok.encode("three")


@pytest.mark.parametrize("spec", ["bpe:10", "bpe", "words", "word:x", "char:5", ""])
def test_bad_specs(spec):
    with pytest.raises(LooplmError, match="tokenizer"):
        parse_spec(spec)


def test_cuts_never_change_bpe():
    """Pieces cut by split_safely encode to the same ids as the whole text."""
    tok = fit_tokenizer("bpe:300", [TEXT])
    text = "a  b\n\n  c, d.\t e " * 30 + TEXT
    pieces = split_safely(text, 37)
    assert "".join(pieces) == text and len(pieces) > 10
    whole = tok.hf.encode(text, add_special_tokens=False).ids
    cut = [i for p in pieces for i in tok.hf.encode(p, add_special_tokens=False).ids]
    assert cut == whole
    assert safe_cut("ab  cd") == 2 and safe_cut("   ") == 0


def test_saved_with_the_run(tmp_path):
    tok = fit_tokenizer("char", [TEXT])
    save_tokenizer(tok, tmp_path)
    assert load_tokenizer(tmp_path, tok.vocab).vocab == tok.vocab
    with pytest.raises(LooplmError, match="differ"):
        load_tokenizer(tmp_path, Vocab(("a", "b")))
    (tmp_path / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(LooplmError, match="damaged"):
        load_tokenizer(tmp_path)
    with pytest.raises(LooplmError, match="no tokenizer.json"):
        load_tokenizer(tmp_path / "elsewhere")
