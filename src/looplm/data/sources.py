"""Data sources by name: ``load_corpus("human-numbers")``, ``load_corpus("borborzan", options)``.

A source makes a :class:`Corpus` from :class:`DataOptions` and may add figures
of its own to ``looplm data describe`` (bor-bor-zan adds the best achievable
loss and accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from looplm.data.corpus import Corpus, corpus_from_tokens
from looplm.data.human_numbers import human_numbers_lines, human_numbers_tokens
from looplm.data.vocab import Vocab
from looplm.errors import LooplmError


@dataclass
class DataOptions:
    """Settings of generated sources (ignored by the others)."""

    games: int = 100_000
    players: str = "random,random"
    seed: int = 0


@dataclass(frozen=True)
class DataSource:
    load: Callable[[DataOptions], Corpus]
    extra_info: Callable[[Corpus, DataOptions], dict] | None = None


def _human_numbers(_: DataOptions) -> Corpus:
    train, valid = human_numbers_lines()
    return corpus_from_tokens("human-numbers", human_numbers_tokens(), len(train) + len(valid))


def _borborzan(options: DataOptions) -> Corpus:
    from looplm.games import VOCAB, borborzan_corpus, encode

    if options.games < 2:
        raise LooplmError(f"--games must be at least 2 (one for train, one for valid), got {options.games}")
    train, valid = borborzan_corpus(options.games, options.players, options.seed)
    ids = lambda text: torch.from_numpy(encode(text))  # noqa: E731
    return Corpus("borborzan", Vocab(tuple(VOCAB)), ids(train), options.games, valid_tokens=ids(valid))


def _borborzan_optimum(corpus: Corpus, options: DataOptions) -> dict:
    from looplm.games import optimal_accuracy, optimal_loss

    valid = corpus.valid_tokens.numpy()
    return {
        "players": options.players,
        "optimal_loss": optimal_loss(valid, options.players),
        "optimal_accuracy": optimal_accuracy(valid, options.players),
    }


SOURCES: dict[str, DataSource] = {
    "human-numbers": DataSource(_human_numbers),
    "borborzan": DataSource(_borborzan, _borborzan_optimum),
}


def _source(name: str) -> DataSource:
    try:
        return SOURCES[name]
    except KeyError:
        raise LooplmError(f"unknown data {name!r}: choose one of {', '.join(SOURCES)}") from None


def load_corpus(name: str, options: DataOptions | None = None) -> Corpus:
    return _source(name).load(options or DataOptions())


def describe_corpus(corpus: Corpus, options: DataOptions | None = None) -> dict:
    """``corpus.describe()`` plus the source's own figures."""
    info = corpus.describe()
    extra = _source(corpus.name).extra_info
    if extra is not None:
        info.update(extra(corpus, options or DataOptions()))
    return info
