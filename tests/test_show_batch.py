"""``looplm data show-batch`` / ``Corpus.show_batch``: the first batches as text, layout visible."""

import pytest

from looplm.cli.main import main
from looplm.data.show import batch_rows
from looplm.data.sources import DataOptions, load_corpus
from looplm.data.tokenize import tokenizer_for

TEXT = "the cat sat on the mat. the dog sat on the log. a cat and a dog met on a mat.\n" * 30


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def corpora(text_file):
    yield load_corpus("human-numbers")
    yield load_corpus("borborzan", DataOptions(games=400))
    for tok in ("char", "word", "bpe:300"):
        yield load_corpus(str(text_file), DataOptions(tokenizer=tok))


@pytest.mark.parametrize("valid", [False, True])
def test_rows_are_the_stream_decoded_and_continue_in_the_next_batch(text_file, valid):
    for corpus in corpora(text_file):
        bs, sl = 4, 5
        train, vdata = corpus.batches(bs, sl, "every")
        data, stream = (vdata, corpus.split(sl)[1]) if valid else (train, corpus.split(sl)[0])
        tok = tokenizer_for(corpus)
        first, second = batch_rows(corpus, data, 0), batch_rows(corpus, data, 1)
        for a, b in zip(first, second):
            assert b.start == a.start + sl  # row j goes on in row j of the next batch
            assert a.input == tok.decode(stream[a.start:a.start + sl].tolist())
            assert a.target == tok.decode(stream[a.start + 1:a.start + sl + 1].tolist())
        assert first[1].start == len(data) * sl  # rows lie m*sl tokens apart


def test_last_layout_shows_one_target_and_consecutive_samples():
    corpus = load_corpus("human-numbers")
    _, valid = corpus.batches(8, 3, "last", group=False)
    rows = batch_rows(corpus, valid, 1, group=False)
    stream = corpus.split(3)[1]
    assert [r.start for r in rows] == [(8 + j) * 3 for j in range(8)]
    assert rows[0].target == corpus.vocab.itos[int(stream[rows[0].start + 3])]


@pytest.mark.parametrize("argv, expect", [
    (["human-numbers", "--n", "2", "--rows", "2"], ["batch 1", "row j continues in row j of the next batch",
                                                   "one . two . three . four"]),
    (["borborzan", "--games", "300", "--model", "lm1", "--valid"], ["(valid)", "sl 3", "none continues"]),
])
def test_cli_prints_the_table(capsys, argv, expect):
    assert main(["data", "show-batch", *argv]) == 0
    out = capsys.readouterr().out
    for piece in expect:
        assert piece in out


def test_cli_text_with_a_tokenizer(capsys, text_file):
    assert main(["data", "show-batch", str(text_file), "--tokenizer", "word", "--bs", "2", "--sl", "4", "--n", "1"]) == 0
    assert "the cat sat on" in capsys.readouterr().out
