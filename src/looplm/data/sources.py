"""Data sources by name: ``load_corpus("human-numbers")``."""

from __future__ import annotations

from typing import Callable

from looplm.data.corpus import Corpus, corpus_from_tokens
from looplm.data.human_numbers import human_numbers_lines, human_numbers_tokens
from looplm.errors import LooplmError


def _human_numbers() -> Corpus:
    train, valid = human_numbers_lines()
    return corpus_from_tokens("human-numbers", human_numbers_tokens(), len(train) + len(valid))


SOURCES: dict[str, Callable[[], Corpus]] = {"human-numbers": _human_numbers}


def load_corpus(name: str) -> Corpus:
    try:
        make = SOURCES[name]
    except KeyError:
        raise LooplmError(f"unknown data {name!r}: choose one of {', '.join(SOURCES)}") from None
    return make()
