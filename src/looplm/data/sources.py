"""Data sources by name: ``load_corpus("human-numbers")``, ``load_corpus("borborzan", options)``,
or a path to your own text: ``load_corpus("notes.txt", DataOptions(tokenizer="bpe:2000"))``.

A source makes a :class:`Corpus` from :class:`DataOptions` and may add figures
of its own to ``looplm data describe`` (bor-bor-zan adds the best achievable
loss and accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from looplm.data.corpus import Corpus, corpus_from_tokens
from looplm.data.human_numbers import human_numbers_lines, human_numbers_tokens
from looplm.data.text import load_text_corpus
from looplm.data.tokenize import Tokenizer
from looplm.data.vocab import Vocab
from looplm.errors import LooplmError


@dataclass
class DataOptions:
    """Settings of generated sources and of text corpora (each reads the fields it needs)."""

    games: int = 100_000
    players: str = "random,random"
    seed: int = 0
    tokenizer: str = "char"  # text: char, word, word:N or bpe:N
    valid: str | None = None  # text: a separate validation file or folder
    valid_pct: float = 0.1  # text without --valid: the last 10% is validation
    shuffle_docs: bool = False  # text: a new document order every epoch
    split_at: str = "word"  # text without --valid: cut at the nearest "word" start (0.1's runs: "char")


@dataclass(frozen=True)
class DataSource:
    load: Callable[[DataOptions], Corpus]
    extra_info: Callable[[Corpus, DataOptions], dict] | None = None
    options: tuple[str, ...] = ()  # the DataOptions it reads: what a run's config.json keeps


TEXT_OPTIONS = ("tokenizer", "valid", "valid_pct", "shuffle_docs", "seed", "split_at")  # seed: the document order


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
    "borborzan": DataSource(_borborzan, _borborzan_optimum, ("games", "players", "seed")),
}


def _source(name: str) -> DataSource:
    try:
        return SOURCES[name]
    except KeyError:
        raise LooplmError(f"unknown data {name!r}: choose one of {', '.join(SOURCES)}, "
                          "or give the path of a UTF-8 text file or of a folder of .txt files") from None


def is_text_path(name: str) -> bool:
    """Does ``name`` (``--data``) name a text file or folder rather than a generated source?"""
    return name not in SOURCES and (Path(name).exists() or bool(Path(name).suffix) or "/" in name)


def source_options(name: str) -> tuple[str, ...]:
    """The :class:`DataOptions` fields that the data ``name`` reads."""
    return TEXT_OPTIONS if is_text_path(name) else _source(name).options


def load_corpus(name: str, options: DataOptions | None = None, tokenizer: Tokenizer | None = None,
                same_data: bool = False) -> Corpus:
    """A source by name, or the text at path ``name`` (read with ``tokenizer``, e.g. a run's
    saved one, instead of fitting ``options.tokenizer``). ``same_data``: the text must be
    what ``tokenizer`` was fitted on, as far as its vocab tells (resume, eval of a run's data)."""
    options = options or DataOptions()
    if is_text_path(name):
        return load_text_corpus(name, options.tokenizer, options.valid, options.valid_pct,
                                options.seed if options.shuffle_docs else None, tokenizer, same_data,
                                split_at=options.split_at)
    return _source(name).load(options)


def describe_corpus(corpus: Corpus, options: DataOptions | None = None) -> dict:
    """``corpus.describe()`` plus the source's own figures."""
    info = corpus.describe()
    extra = SOURCES[corpus.name].extra_info if corpus.name in SOURCES else None
    if extra is not None:
        info.update(extra(corpus, options or DataOptions()))
    return info
