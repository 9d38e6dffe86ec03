"""Text corpora: files and folders, the split, the memmap cache, bad input."""

import os
import types

import numpy as np
import pytest
import torch

from looplm.cli.main import main
from looplm.data.batching import stream_batches
from looplm.data.cache import cache_dir
from looplm.data.sources import DataOptions, describe_corpus, load_corpus
from looplm.data.text import TextCorpus, load_text_corpus
from looplm.training import ShuffleDocuments, data_callbacks
from looplm.errors import LooplmError


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOPLM_CACHE", str(tmp_path / "cache"))


def write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_file_split_is_the_last_tenth_of_the_bytes(tmp_path):
    f = write(tmp_path / "a.txt", "abcdefghij" * 10)
    c = load_text_corpus(f)
    assert isinstance(c, TextCorpus) and c.tokens.dtype == torch.uint16
    assert len(c.tokens) == 90 and len(c.valid_tokens) == 10
    assert c.tokenizer.decode(c.valid_tokens.tolist()) == "abcdefghij"
    train, valid = c.batches(bs=2, sl=4, layout="every")
    x, y = train.batch(0)
    assert x.dtype == y.dtype == torch.int64 and x.shape == (2, 4)
    assert c.tokenizer.decode(x[0].tolist()) == "abcd" and c.tokenizer.decode(y[0].tolist()) == "bcde"


def test_the_cut_moves_to_a_character_boundary(tmp_path):
    f = write(tmp_path / "a.txt", "aaaaaaaaé" + "a" * 9)  # 19 bytes: the cut at byte 9 falls inside é
    c = load_text_corpus(f, valid_pct=0.5)
    assert c.tokenizer.decode(c.tokens.tolist()) == "aaaaaaaaé"
    assert c.tokenizer.decode(c.valid_tokens.tolist()) == "a" * 9


def test_folder_documents_with_separators(tmp_path):
    write(tmp_path / "docs" / "b.txt", "bbbb")
    write(tmp_path / "docs" / "a.txt", "aaaa")
    write(tmp_path / "docs" / "sub" / "c.txt", "cccc")
    write(tmp_path / "docs" / "empty.txt", "")
    write(tmp_path / "docs" / "notes.md", "ignored")
    # 12 bytes, cut at int(12 * 0.75) = 9 (split_at="char": 0.1's cut, inside a document)
    c = load_text_corpus(tmp_path / "docs", valid_pct=0.25, split_at="char")
    # the train part of the document cut in two ends with <sep> too, so documents can be shuffled
    assert c.tokenizer.decode(c.tokens.tolist()) == "aaaa<sep>bbbb<sep>c<sep>"
    assert c.tokenizer.decode(c.valid_tokens.tolist()) == "ccc<sep>"
    assert c.doc_starts.tolist() == [0, 5, 10]
    # the default cut moves to the nearest word start: here the start of c.txt, 1 byte back
    c = load_text_corpus(tmp_path / "docs", valid_pct=0.25)
    assert c.tokenizer.decode(c.tokens.tolist()) == "aaaa<sep>bbbb<sep>" and len(c.valid_tokens) == 5


def test_a_separate_valid_file(tmp_path):
    c = load_text_corpus(write(tmp_path / "t.txt", "hello world"), tokenizer="word",
                         valid=write(tmp_path / "v.txt", "world hello hello there"))
    assert len(c.tokens) == 2 and c.tokenizer.decode(c.valid_tokens.tolist()) == "world hello hello <unk>"


def test_load_corpus_takes_a_path_and_describes_it(tmp_path):
    f = write(tmp_path / "a.txt", "to be or not to be\n" * 50)
    c = load_corpus(str(f), DataOptions(tokenizer="word"))
    info = describe_corpus(c)
    assert info["tokenizer"] == "word" and info["vocab_size"] == 2 + 4 and info["n_lines"] == 50


def test_the_cache_is_reused_and_keyed_by_the_bytes(tmp_path):
    f = write(tmp_path / "a.txt", "abcdefghij" * 10)
    first = load_text_corpus(f)
    entries = os.listdir(cache_dir() / "streams")
    again = load_text_corpus(f)
    assert os.listdir(cache_dir() / "streams") == entries and len(entries) == 1
    assert torch.equal(first.tokens, again.tokens)
    write(f, "abcdefghij" * 9 + "abcdefghik")
    changed = load_text_corpus(f)
    assert len(os.listdir(cache_dir() / "streams")) == 2 and not torch.equal(changed.valid_tokens, again.valid_tokens)


def test_a_damaged_cache_entry_is_rebuilt(tmp_path):
    f = write(tmp_path / "a.txt", "abcdefghij" * 10)
    expected = load_text_corpus(f).tokens.clone()
    (entry,) = (cache_dir() / "streams").iterdir()
    write(entry / "train.bin", b"\0\0\0")
    assert torch.equal(load_text_corpus(f).tokens, expected)


def test_big_vocabs_use_uint32(tmp_path):
    f = write(tmp_path / "a.txt", " ".join(f"w{i}" for i in range(70_000)) * 2)
    c = load_text_corpus(f, tokenizer="word", valid_pct=0.5)
    assert c.tokens.dtype == torch.uint32 and len(c.vocab) == 70_002
    assert c.batches(2, 4, "every")[0].batch(0)[0].dtype == torch.int64


def test_shuffled_documents(tmp_path):
    for i in range(8):
        write(tmp_path / "docs" / f"{i}.txt", str(i) * (i + 1))
    write(tmp_path / "docs" / "z.txt", "z" * 40)  # the valid part
    c = load_text_corpus(tmp_path / "docs", valid_pct=0.4, shuffle_seed=0, split_at="char")  # cut inside z.txt
    orders = [c.tokenizer.decode(c.train_tokens(e).tolist()).split("<sep>")[:-1] for e in range(3)]
    assert all(sorted(o) == sorted(orders[0]) and len(o) == 9 for o in orders)  # 8 docs + the cut one's head
    assert orders[0] != orders[1] and c.train_tokens(1).tolist() == c.train_tokens(1).tolist()
    assert isinstance(data_callbacks(c, bs=4)[0], ShuffleDocuments)
    assert data_callbacks(load_text_corpus(tmp_path / "docs", valid_pct=0.4), bs=4) == []


@pytest.mark.parametrize("group, rank, world_size", [(True, 0, 1), (False, 0, 1), (True, 1, 2), (False, 1, 2)])
def test_a_reshuffled_epoch_keeps_the_layout_and_the_ranks_rows(tmp_path, group, rank, world_size):
    """The new order is laid out as the run's batches were: same global bs, grouping and rows."""
    for i in range(8):
        write(tmp_path / "docs" / f"{i}.txt", str(i) * (i + 3))
    c = load_text_corpus(tmp_path / "docs", valid_pct=0.2, shuffle_seed=0)
    train, _ = c.batches(4, 2, "every", rank=rank, world_size=world_size, group=group)
    learn = types.SimpleNamespace(train_data=train, epoch=1, device=torch.device("cpu"))
    (shuffle,) = data_callbacks(c, 4, group, rank, world_size)
    shuffle.before_epoch(learn)
    expect = stream_batches(c.train_tokens(1), 4, 2, "every", rank, world_size, group)
    assert learn.train_data.bs == 4 // world_size
    assert torch.equal(learn.train_data.inputs, expect.inputs) and torch.equal(learn.train_data.targets, expect.targets)


@pytest.mark.parametrize("make, match", [
    (lambda d: write(d / "e.txt", ""), "empty"),
    (lambda d: write(d / "l.txt", "caf\xe9 ok", encoding="latin-1"), "not UTF-8 text .*offset 3"),
    (lambda d: (d / "empty_dir").mkdir() or d / "empty_dir", "no .txt files"),
    (lambda d: write(d / "f" / "e.txt", "") and d / "f", "only empty .txt"),
    (lambda d: d / "missing.txt", "no such file"),
    (lambda d: write(d / "s.txt", "a"), "too short"),
    (lambda d: write(d / "s.txt", "ab"), "train text .* holds 1 char token"),
    (lambda d: write(d / "w.txt", "a b c d e f g h i j k l m n o p q r s t uvwxyz"), "valid text .* holds 1 word token"),
])
def test_bad_input_is_one_clear_error(tmp_path, make, match):
    path = make(tmp_path)
    tokenizer = "word" if path.name == "w.txt" else "char"
    with pytest.raises(LooplmError, match=match):
        load_text_corpus(path, tokenizer=tokenizer)
    streams = cache_dir() / "streams"
    assert not streams.exists() or not os.listdir(streams)  # nothing half-written


def test_bad_input_from_the_cli(tmp_path, capsys):
    bad = write(tmp_path / "l.txt", b"\xff\xfe bad bytes")
    assert main(["data", "describe", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not UTF-8" in err
    assert main(["data", "describe", str(tmp_path / "nope.txt")]) == 2
    assert "no such file" in capsys.readouterr().err
    good = write(tmp_path / "g.txt", "abc " * 30)
    assert main(["data", "describe", str(good), "--tokenizer", "bpe:9"]) == 2
    assert "bpe:N needs N between 257 and" in capsys.readouterr().err


def test_memmap_backed(tmp_path):
    """The streams are the cache files, mapped into memory, not copies."""
    c = load_text_corpus(write(tmp_path / "a.txt", "abcdefghij" * 1000))
    (entry,) = (cache_dir() / "streams").iterdir()
    stored = np.fromfile(entry / "train.bin", dtype=np.uint16)
    assert np.array_equal(stored, c.tokens.numpy())
    maps = "/proc/self/maps"
    if os.path.exists(maps):
        with open(maps) as f:
            assert str(entry / "train.bin") in f.read()


def test_read_with_a_saved_tokenizer(tmp_path):
    """Evaluation and resume read other text with the run's tokenizer, not a new one."""
    first = load_text_corpus(write(tmp_path / "a.txt", "abcabcabc d" * 10))
    other = load_text_corpus(write(tmp_path / "b.txt", "cab xyz " * 10), fitted=first.tokenizer)
    assert other.vocab == first.vocab and 0 in other.valid_tokens.tolist()  # x, y, z: <unk>


def test_train_on_a_folder_with_shuffled_documents(tmp_path, capsys):
    for i in range(6):
        write(tmp_path / "docs" / f"{i}.txt", f"document {i} says hello to the world.\n" * 8)
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "docs"), "--shuffle-docs", "--model", "gru", "--epochs", "2",
                 "--bs", "4", "--sl", "16", "--set", "n_hidden=16", "--set", "emb_sz=8", "--set", "n_layers=1",
                 "--quiet", "--out", str(out)]) == 0
    assert (out / "tokenizer.json").is_file()


def test_data_export_writes_a_char_corpus_back_as_its_text(tmp_path):
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 20
    src = write(tmp_path / "a.txt", text)
    out = tmp_path / "out.txt"
    assert main(["data", "export", str(src), "--tokenizer", "char", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == text
