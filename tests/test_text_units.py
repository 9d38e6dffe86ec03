"""Loss per character and bits per byte: the same total nats over the scored text's characters
and UTF-8 bytes, for every tokenizer, in eval and in the training table."""

import csv
import json
import math

import pytest
import torch

from looplm.cli.main import main
from looplm.data.sources import DataOptions, load_corpus
from looplm.evaluate import per_text, scored_text_size, text_size
from looplm.training import TrainConfig, train

TEXT = "Früh übt sich, wer ein Meister werden will. " * 40 + "Ende gut, alles gut.\n"


@pytest.fixture
def files(tmp_path):
    train_path, valid_path = tmp_path / "train.txt", tmp_path / "valid.txt"
    train_path.write_text(TEXT * 3, encoding="utf-8")
    valid_path.write_text(TEXT, encoding="utf-8")
    return train_path, valid_path


@pytest.mark.parametrize("tokenizer", ["char", "word", "bpe:300"])
def test_text_size_counts_the_predicted_text(files, tokenizer):
    corpus = load_corpus(str(files[0]), DataOptions(tokenizer=tokenizer, valid=str(files[1])))
    valid = corpus.valid_tokens
    n_chars, n_bytes = text_size(corpus.tokenizer, valid)
    whole = corpus.tokenizer.decode(valid.tolist())
    first = corpus.tokenizer.decode(valid[:1].tolist())
    assert (n_chars, n_bytes) == (len(whole) - len(first), len(whole.encode()) - len(first.encode()))
    assert n_bytes > n_chars  # ü, ß: two bytes each
    if tokenizer != "word":  # char and byte-level BPE give the text back exactly
        assert whole == TEXT
    part = text_size(corpus.tokenizer, valid, 10)
    assert 0 < part[0] < n_chars


@pytest.mark.parametrize("tokenizer", ["char", "word"])
def test_scattered_targets_count_each_token_as_it_decodes(files, tokenizer):
    """A "last" layout scores one token per sample: its text is those tokens, each with the
    separator a decoder writes before it (a space before each word, nothing between chars)."""
    corpus = load_corpus(str(files[0]), DataOptions(tokenizer=tokenizer, valid=str(files[1])))
    targets = corpus.valid_tokens[6::7][:40].reshape(4, 10)
    pieces = [corpus.tokenizer.vocab.itos[i] for i in targets.reshape(-1).tolist()]
    text = "".join(pieces) if tokenizer == "char" else "".join(" " + w for w in pieces)
    assert scored_text_size(corpus.tokenizer, targets) == (len(text), len(text.encode("utf-8")))


def test_per_text_spreads_the_same_total():
    r = per_text(2.0, 100, 400, 500)
    assert r["loss_per_char"] == pytest.approx(0.5)
    assert r["bits_per_byte"] == pytest.approx(200 / math.log(2) / 500)


def test_eval_and_the_training_table_give_bits_per_byte(files, tmp_path, capsys, monkeypatch):
    torch.manual_seed(0)
    cfg = TrainConfig(data=str(files[0]), model="lstm", epochs=1, lr=1e-2, bs=2, sl=16,
                      model_config=dict(emb_sz=8, n_hidden=16, n_layers=1),
                      data_options=DataOptions(tokenizer="char", valid=str(files[1])))
    run = tmp_path / "run"
    train(cfg, out=run, log=None, progress=False)
    row = next(csv.DictReader((run / "metrics.csv").open()))
    # char tokens: nats per char is the table's loss (its targets cover whole rows), bytes fewer
    assert float(row["loss_per_char"]) == pytest.approx(float(row["valid_loss"]), rel=0.02)
    assert float(row["bits_per_byte"]) < float(row["valid_loss"]) / math.log(2)
    assert main(["eval", "--run", str(run), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["data"].endswith("valid.txt (valid)")  # the file it scores, not the training file
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "--run", "run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["data"] == "valid.txt (valid)"  # relative to where eval runs
    assert r["loss_per_char"] == pytest.approx(r["loss"] * r["n_predicted"] / r["n_chars"])
    assert r["bits_per_byte"] == pytest.approx(r["bits_per_char"] * r["n_chars"] / r["n_bytes"])
    assert main(["eval", "--run", str(run)]) == 0
    out = capsys.readouterr().out
    assert "bits/byte" in out and "valid.txt (valid)" in out
