"""Bor-bor-zan documents: random games written in the seed's format, split 80/20.

Each move pair is written "a to b , " (player 1's move first) and each game ends with
"end . "; games are concatenated with nothing between them (the seed's ``lst_to_doc``)::

    zan to buddha , shield to shield , end . shield to buddha , end . buddha to ...
    \\__ pair 1 __/ \\___ pair 2 ____/ \\___/ \\__ next game ...
    r = 0  1  2   3 4      5  6      7 8   9   (r: position in the game; 4 per pair)

Tokens are the space-separated words (``text.split()``; the seed's ``split(' ')`` also left
one empty token after the final space, which carries no information and we drop). The
vocabulary is the 8 moves and 4 punctuation words, 12 tokens, in ``VOCAB`` order.
The first 80% of the games (``4*n // 5``) are train, the rest valid, as the seed did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from looplm.errors import LooplmError
from looplm.games.players import Player, resolve_players, sample
from looplm.games.rules import DEADLY, MOVES, N_MOVES, play

TO, COMMA, END, DOT = "to", ",", "end", "."
VOCAB: tuple[str, ...] = MOVES + (TO, COMMA, END, DOT)
MAX_PAIRS = 10_000

# The text of every pair (a, b) at index a*8 + b.
_PAIR_TEXT = np.array([f"{x} {TO} {y} {COMMA} " for x in MOVES for y in MOVES], dtype=object)
_GAME_END = f"{END} {DOT} "


@dataclass(frozen=True)
class Games:
    """Many games, flat: ``moves`` (P, 2) int8 move ids of every pair, game after game;
    game i is ``moves[offsets[i]:offsets[i+1]]``; ``offsets`` (n+1,) int64."""

    moves: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def record(self, i: int) -> list[tuple[str, str]]:
        """Game i as the seed's ``text_record``: [('zan', 'buddha'), ('shield', 'shield')]."""
        return [(MOVES[a], MOVES[b]) for a, b in self.moves[self.offsets[i]:self.offsets[i + 1]]]

    def split(self, n_first: int) -> tuple["Games", "Games"]:
        """The first ``n_first`` games and the rest."""
        cut = self.offsets[n_first]
        return (
            Games(self.moves[:cut], self.offsets[: n_first + 1]),
            Games(self.moves[cut:], self.offsets[n_first:] - cut),
        )


def generate_games(
    n: int,
    players: str | Sequence[str | Player] = ("random", "random"),
    seed: int = 0,
    max_pairs: int = MAX_PAIRS,
) -> Games:
    """Play ``n`` games to their end, all at once: one numpy step per pair index.

    Every step draws player 1's and player 2's moves for all unfinished games from their
    policies at the current energies, applies the rules and retires the games a kill ended.
    The same (n, players, seed) gives the same games.
    """
    if n < 1:
        raise LooplmError(f"the number of games must be at least 1, got {n}")
    p1, p2 = resolve_players(players)
    rng = np.random.default_rng(seed)
    live = np.arange(n)
    e1 = np.zeros(n, dtype=np.int64)
    e2 = np.zeros(n, dtype=np.int64)
    steps = []  # per step: (game ids, a, b) of the games still on
    for _ in range(max_pairs):
        a = sample(p1, e1, e2, rng)
        b = sample(p2, e2, e1, rng)
        steps.append((live, a, b))
        on = ~DEADLY[a, b]
        e1, e2 = play(e1[on], e2[on], a[on], b[on])
        live = live[on]
        if live.size == 0:
            break
    else:
        raise LooplmError(
            f"{live.size} games were still on after {max_pairs} pairs: "
            f"players {p1.name},{p2.name} may never end a game"
        )
    game, first, second = (np.concatenate(column) for column in zip(*steps))
    pairs = np.stack([first, second], axis=1)
    order = np.argsort(game, kind="stable")  # steps are in time order, so stable = pair order
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(game, minlength=n), out=offsets[1:])
    return Games(pairs[order].astype(np.int8), offsets)


def games_to_text(games: Games) -> str:
    """The seed's document: every pair "a to b , ", every game closed by "end . "."""
    pieces = _PAIR_TEXT[games.moves[:, 0].astype(np.int64) * N_MOVES + games.moves[:, 1]]
    return "".join(np.insert(pieces, games.offsets[1:], _GAME_END).tolist())


def split_games(games: Games) -> tuple[Games, Games]:
    """Train and valid games: the first ``4*n // 5`` and the rest (the seed's 80000/20000)."""
    n = len(games)
    if n < 2:
        raise LooplmError(f"need at least 2 games to split into train and valid, got {n}")
    return games.split(4 * n // 5)


def borborzan_corpus(
    n_games: int = 100_000,
    players: str | Sequence[str | Player] = ("random", "random"),
    seed: int = 0,
) -> tuple[str, str]:
    """(train_text, valid_text) of ``n_games`` seeded games in the seed's format."""
    train, valid = split_games(generate_games(n_games, players, seed))
    return games_to_text(train), games_to_text(valid)


def encode(text_or_tokens: str | Sequence[str], vocab: Sequence[str] = VOCAB) -> np.ndarray:
    """Token ids (T,) int64 of a document (split on whitespace) or a token list, in ``vocab``."""
    tokens = text_or_tokens.split() if isinstance(text_or_tokens, str) else text_or_tokens
    stoi = {w: i for i, w in enumerate(vocab)}
    try:
        return np.fromiter((stoi[w] for w in tokens), dtype=np.int64, count=len(tokens))
    except KeyError as err:
        raise LooplmError(
            f"not a bor-bor-zan token: {err.args[0]!r} (vocab: {' '.join(vocab)})"
        ) from None
