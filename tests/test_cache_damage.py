"""A damaged token-cache entry is rebuilt, never trusted: a fitted tokenizer entry that is not
a tokenizer (``{}``), a stream entry holding an id past the vocab, or any entry truncated."""

import json

import numpy as np
import pytest

from looplm.cli.main import main
from looplm.data.sources import DataOptions, load_corpus

TEXT = "the cat sat on the mat. the dog sat on the log.\n" * 20


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOPLM_CACHE", str(tmp_path / "cache"))
    (tmp_path / "d.txt").write_text(TEXT)
    return tmp_path


def corpus(folder, tok="word"):
    return load_corpus(str(folder / "d.txt"), DataOptions(tokenizer=tok))


@pytest.mark.parametrize("damage", ["empty object", "not json", "wrong format"])
def test_a_damaged_tokenizer_entry_is_fitted_again(cache, damage):
    good = corpus(cache)
    for entry in (cache / "cache" / "tokenizers").glob("*.json"):
        entry.write_text({"empty object": "{}", "not json": "{", "wrong format": json.dumps({"format": 99})}[damage])
    again = corpus(cache)
    assert again.vocab.itos == good.vocab.itos and np.array_equal(again.tokens.numpy(), good.tokens.numpy())


def test_a_stream_entry_with_an_id_past_the_vocab_is_rebuilt(cache, capsys):
    good = corpus(cache)
    expected = good.tokens.numpy().copy()  # the entry is a memmap: copy before damaging the file
    [entry] = (cache / "cache" / "streams").iterdir()
    ids = np.memmap(entry / "train.bin", dtype=good.tokens.numpy().dtype, mode="r+")
    ids[3] = len(good.vocab) + 5
    ids.flush()
    del ids
    again = corpus(cache)
    assert int(again.tokens.numpy().max()) < len(again.vocab)
    assert np.array_equal(again.tokens.numpy(), expected)
    out = cache / "run"
    assert main(["train", "--data", str(cache / "d.txt"), "--tokenizer", "word", "--model", "lstm", "--emb-sz", "8",
                 "--n-hidden", "8", "--bs", "2", "--sl", "4", "--epochs", "1", "--quiet", "--out", str(out)]) == 0
