from collections import Counter

import pytest

from looplm.data import load_corpus
from looplm.data.human_numbers import human_numbers_lines, human_numbers_tokens, number_to_words


@pytest.mark.parametrize(
    "n, words",
    [
        (1, "one"),
        (13, "thirteen"),
        (20, "twenty"),
        (42, "forty two"),
        (100, "one hundred"),
        (123, "one hundred twenty three"),
        (1010, "one thousand ten"),
        (8000, "eight thousand"),
        (9999, "nine thousand nine hundred ninety nine"),
    ],
)
def test_number_to_words(n, words):
    assert number_to_words(n) == words


def test_number_out_of_range():
    with pytest.raises(ValueError):
        number_to_words(10000)


def test_files_as_fastai_ships_them():
    train, valid = human_numbers_lines()
    assert (len(train), len(valid)) == (7999, 1999)
    assert train[0] == "one" and train[-1] == number_to_words(7999)
    assert valid[0] == number_to_words(8001)  # 8000 is absent
    assert "eight thousand" not in train + valid


def test_the_chapters_counts():
    tokens = human_numbers_tokens()
    assert len(tokens) == 63_095
    assert len(set(tokens)) == 30
    assert tokens[:5] == ["one", ".", "two", ".", "three"]
    samples = range(0, len(tokens) - 4, 3)  # the chapter's three-token samples
    assert len(samples) == 21_031
    cut = int(len(samples) * 0.8)
    targets = Counter(tokens[i + 3] for i in samples[cut:])
    top, count = targets.most_common(1)[0]
    assert top == "thousand"
    assert count / len(samples[cut:]) == pytest.approx(0.1517, abs=5e-4)


def test_describe_gives_the_same_figures():
    info = load_corpus("human-numbers").describe()
    assert info["n_tokens"] == 63_095
    assert info["vocab_size"] == 30
    assert info["n_samples_3"] == 21_031
    assert info["n_lines"] == 9_998
    assert info["top_token"] == "thousand"
    assert info["baseline_accuracy"] == pytest.approx(0.1517, abs=5e-4)
