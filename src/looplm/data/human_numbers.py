"""Human Numbers: the numbers 1..9999 written out in English, generated locally.

fastai's HUMAN_NUMBERS archive holds ``train.txt`` (1..7999) and ``valid.txt``
(8001..9999; 8000 is absent), one number per line, written without "and"
(123 -> "one hundred twenty three"). The chapter reads both files, joins the
stripped lines with " . " and splits on spaces::

    one . two . three . ... . nine thousand nine hundred ninety nine
    \\_____________ 63,095 tokens, 30 distinct ______________________/

We generate the same lines instead of downloading them.
"""

from __future__ import annotations

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()

TRAIN_RANGE = range(1, 8000)
VALID_RANGE = range(8001, 10000)
SEPARATOR = "."


def number_to_words(n: int) -> str:
    """English words for 1 <= n <= 9999, without "and": 123 -> 'one hundred twenty three'."""
    if not 1 <= n <= 9999:
        raise ValueError(f"number_to_words takes 1..9999, got {n}")
    words: list[str] = []
    thousands, rest = divmod(n, 1000)
    hundreds, rest = divmod(rest, 100)
    if thousands:
        words += [_ONES[thousands], "thousand"]
    if hundreds:
        words += [_ONES[hundreds], "hundred"]
    if rest >= 20:
        words.append(_TENS[rest // 10])
        if rest % 10:
            words.append(_ONES[rest % 10])
    elif rest:
        words.append(_ONES[rest])
    return " ".join(words)


def human_numbers_lines() -> tuple[list[str], list[str]]:
    """The lines of ``train.txt`` and ``valid.txt``, one number per line."""
    return [number_to_words(n) for n in TRAIN_RANGE], [number_to_words(n) for n in VALID_RANGE]


def human_numbers_tokens() -> list[str]:
    """The chapter's token stream: all lines joined with ' . ', split on spaces."""
    train, valid = human_numbers_lines()
    return f" {SEPARATOR} ".join(line.strip() for line in train + valid).split(" ")
