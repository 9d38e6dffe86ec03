import pytest

from looplm.data.vocab import Vocab
from looplm.errors import LooplmError


def test_first_appearance_order_and_roundtrip(tmp_path):
    vocab = Vocab.from_tokens("b a b c a".split())
    assert vocab.itos == ("b", "a", "c")
    ids = vocab.encode("c a b b".split())
    assert ids.tolist() == [2, 1, 0, 0]
    assert vocab.decode(ids) == ["c", "a", "b", "b"]
    vocab.save(tmp_path / "vocab.json")
    assert Vocab.load(tmp_path / "vocab.json") == vocab


def test_unknown_token_is_a_clear_error():
    vocab = Vocab.from_tokens(["one", "two"])
    with pytest.raises(LooplmError, match="unknown token 'three'"):
        vocab.encode(["one", "three"])


def test_unknown_token_maps_to_unk():
    vocab = Vocab.from_tokens(["one", "two"], unk="<unk>")
    assert vocab.encode(["two", "three"]).tolist() == [1, vocab.stoi["<unk>"]]


def test_bad_vocab_files(tmp_path):
    (tmp_path / "v.json").write_bytes(b"\xff\xfe not json")
    with pytest.raises(LooplmError, match="the vocab .* is damaged"):
        Vocab.load(tmp_path / "v.json")
    with pytest.raises(LooplmError, match="must not list a token twice"):
        Vocab(("a", "a"))
