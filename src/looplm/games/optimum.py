"""The exact next-token distribution of a bor-bor-zan token stream, and the best possible loss.

The players are known distributions over moves given the energies, and the energies follow
from the moves already written, so every token's distribution given all tokens before it is
known. By r, the token's position in its game (4 tokens per pair)::

    r % 4:    0        1          2              3     0           1     (next game) 0
    token:    a        to         b              ,     end         .     a ...
    P:     policy1   to: 1    policy2         ,: 1   end: 1 if    .: 1   policy1
           (e1, e2)          (e2, e1)                the pair     (after at (0, 0)
                                                     was deadly   end)
                                                     else policy1 at the new energies

Player 2's move b is drawn independently of a (the moves are simultaneous), so having read
"a to" says nothing more about b than the energies do. The stream must begin at a game's
first token (train and valid texts do); it may stop anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn, Sequence

import numpy as np

from looplm.errors import LooplmError
from looplm.games.document import COMMA, DOT, END, TO, VOCAB
from looplm.games.metrics import (
    accuracy, cross_entropy, end_precision_recall, loss_gap, mean_kl, unaffordable_mass,
)
from looplm.games.players import Player, resolve_players
from looplm.games.rules import DEADLY, N_MOVES, available, play

_TO, _COMMA, _END, _DOT = (VOCAB.index(w) for w in (TO, COMMA, END, DOT))


@dataclass(frozen=True)
class StreamTruth:
    """What is known at each position t of a stream of T tokens, columns in the caller's vocab.

    ``probs`` (T, V): P(token t | tokens before t); a language model predicting ids[1:]
    is scored against ``probs[1:]``. ``move_next`` (T,) bool: token t is a move.
    ``unaffordable`` (T, V) bool: the moves the player to move at t cannot afford
    (all False where no move is next).
    """

    probs: np.ndarray
    move_next: np.ndarray
    unaffordable: np.ndarray


def _game_ids(ids, vocab: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The stream in ``VOCAB`` ids (T,), and for each ``VOCAB`` word its column in ``vocab``."""
    missing = [w for w in VOCAB if w not in vocab]
    if missing:
        raise LooplmError(f"the vocab lacks the bor-bor-zan tokens {missing}")
    cols = np.array([list(vocab).index(w) for w in VOCAB])
    to_game = np.full(len(vocab), -1)
    to_game[cols] = np.arange(len(VOCAB))
    g = to_game[np.asarray(ids, dtype=np.int64)]
    if (g < 0).any():
        t = int(np.argmax(g < 0))
        raise LooplmError(f"token {t} ({vocab[ids[t]]!r}) is not a bor-bor-zan token")
    return g, cols


def _fail(g: np.ndarray, t: int, why: str) -> NoReturn:
    context = " ".join(VOCAB[i] for i in g[max(t - 8, 0): t + 1])
    raise LooplmError(f"token {t} of the stream is {why}: ... {context}")


@dataclass(frozen=True)
class _Pairs:
    """The stream's pairs of moves: ``start`` (P,) the position of each pair's first move,
    ``move1``/``move2`` (P,) its moves, the energies before it (``before1``, ``before2``) and
    after it (``after1``, ``after2``), in game order; ``pair_of`` (T,) maps a pair's first
    position to its index."""

    start: np.ndarray
    move1: np.ndarray
    move2: np.ndarray
    before1: np.ndarray
    before2: np.ndarray
    after1: np.ndarray
    after2: np.ndarray
    pair_of: np.ndarray


def _positions(game_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each token's predecessor (a stream starts as if after a game's "."), its position in
    its game, and that position % 4 (its slot in "a to b ,")."""
    previous = np.concatenate([[_DOT], game_ids[:-1]])
    starts = np.flatnonzero(previous == _DOT)
    at = np.arange(len(game_ids))
    in_game = at - starts[np.searchsorted(starts, at, side="right") - 1]
    return previous, in_game, in_game % 4


def _check_format(game_ids: np.ndarray, previous: np.ndarray, in_game: np.ndarray, slot: np.ndarray) -> None:
    """Which kind of token each slot allows (the rules are checked by probability later)."""
    is_move = game_ids < N_MOVES
    shaped = np.select(
        [slot == 0, slot == 1, slot == 2],
        [is_move | ((game_ids == _END) & (in_game > 0)),
         np.where(previous == _END, game_ids == _DOT, game_ids == _TO), is_move],
        game_ids == _COMMA,
    )
    if not shaped.all():
        _fail(game_ids, int(np.argmin(shaped)), "out of the 'a to b , ... end .' format")


def _pairs(game_ids: np.ndarray, in_game: np.ndarray, slot: np.ndarray) -> _Pairs:
    """The pairs and their energies, filled one pair index at a time (each pair's energies
    follow from the pair before it in the same game)."""
    n = len(game_ids)
    start = np.flatnonzero((slot == 0) & (game_ids < N_MOVES))
    move1 = game_ids[start]
    move2 = np.where(start + 2 < n, game_ids[np.minimum(start + 2, n - 1)], 0)  # a cut-off last pair: unused
    index_in_game = in_game[start] // 4
    before1, before2 = np.zeros(len(start), np.int64), np.zeros(len(start), np.int64)
    for index in range(1, int(index_in_game.max(initial=0)) + 1):
        now = np.flatnonzero(index_in_game == index)
        before1[now], before2[now] = play(before1[now - 1], before2[now - 1], move1[now - 1], move2[now - 1])
    after1, after2 = play(before1, before2, move1, move2)
    pair_of = np.zeros(n, np.int64)
    pair_of[start] = np.arange(len(start))
    return _Pairs(start, move1, move2, before1, before2, after1, after2, pair_of)


def _distributions(p1: Player, p2: Player, previous: np.ndarray, in_game: np.ndarray, slot: np.ndarray,
                   pairs: _Pairs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P(token | past) (T, len(VOCAB)), the unaffordable moves (T, len(VOCAB)) and whether a
    move comes next (T,)."""
    n = len(slot)
    probs = np.zeros((n, len(VOCAB)))
    unaffordable = np.zeros((n, len(VOCAB)), bool)
    # slot 0: a new game's first move at (0, 0), or after a pair: end or the next move
    first = np.flatnonzero(slot == 0)
    last_pair = pairs.pair_of[np.maximum(first - 4, 0)]
    new_game = in_game[first] == 0
    ended = ~new_game & DEADLY[pairs.move1[last_pair], pairs.move2[last_pair]]
    energy1 = np.where(new_game, 0, pairs.after1[last_pair])[~ended]
    energy2 = np.where(new_game, 0, pairs.after2[last_pair])[~ended]
    probs[first[ended], _END] = 1.0
    moving = first[~ended]
    probs[moving, :N_MOVES] = p1.policy(energy1, energy2)
    unaffordable[moving, :N_MOVES] = ~available(energy1)
    # slot 2: player 2's move, at the energies before its pair
    second = np.flatnonzero(slot == 2)
    pair = pairs.pair_of[second - 2]
    probs[second, :N_MOVES] = p2.policy(pairs.before2[pair], pairs.before1[pair])
    unaffordable[second, :N_MOVES] = ~available(pairs.before2[pair])
    probs[slot == 1, np.where(previous[slot == 1] == _END, _DOT, _TO)] = 1.0
    probs[slot == 3, _COMMA] = 1.0
    move_next = np.zeros(n, bool)
    move_next[moving] = move_next[second] = True
    return probs, unaffordable, move_next


def stream_truth(
    ids,
    players: str | Sequence[str | Player] = ("random", "random"),
    vocab: Sequence[str] = VOCAB,
) -> StreamTruth:
    """The true distribution at every position of a stream of token ids (T,) in ``vocab``.

    Raises LooplmError where the stream breaks the format or the rules (a token that has
    probability 0 under these players, e.g. an unaffordable move or "end" after a pair
    that kills nobody).
    """
    p1, p2 = resolve_players(players)
    game_ids, cols = _game_ids(ids, vocab)
    if len(game_ids) == 0:
        raise LooplmError("the stream is empty")
    previous, in_game, slot = _positions(game_ids)
    _check_format(game_ids, previous, in_game, slot)
    pairs = _pairs(game_ids, in_game, slot)
    probs, unaffordable, move_next = _distributions(p1, p2, previous, in_game, slot, pairs)
    possible = probs[np.arange(len(game_ids)), game_ids] > 0
    if not possible.all():
        _fail(game_ids, int(np.argmin(possible)), f"impossible for players {p1.name},{p2.name}")
    out_probs = np.zeros((len(game_ids), len(vocab)))
    out_probs[:, cols] = probs
    out_unaffordable = np.zeros((len(game_ids), len(vocab)), bool)
    out_unaffordable[:, cols] = unaffordable
    return StreamTruth(out_probs, move_next, out_unaffordable)


def optimal_loss(ids, players=("random", "random"), vocab: Sequence[str] = VOCAB) -> float:
    """The best achievable mean cross-entropy (nats/token) predicting ids[1:] from the past."""
    return cross_entropy(stream_truth(ids, players, vocab).probs[1:], np.asarray(ids)[1:])


def optimal_accuracy(ids, players=("random", "random"), vocab: Sequence[str] = VOCAB) -> float:
    """Fraction of ids[1:] equal to the argmax of their true distribution."""
    return accuracy(stream_truth(ids, players, vocab).probs[1:], np.asarray(ids)[1:])


def borborzan_scores(
    model_probs, ids, players=("random", "random"), vocab: Sequence[str] = VOCAB
) -> dict[str, float]:
    """Every bor-bor-zan score of a model whose ``model_probs`` (T-1, V) predict ids[1:].

    Keys: loss, optimal_loss, loss_gap (nats/token), accuracy, optimal_accuracy, kl (mean
    KL(true || model), nats), unaffordable_mass, end_precision, end_recall.
    """
    truth = stream_truth(ids, players, vocab)
    targets = np.asarray(ids)[1:]
    model_probs = np.asarray(model_probs, dtype=np.float64)
    true_probs = truth.probs[1:]
    if model_probs.shape != true_probs.shape:
        raise LooplmError(
            f"model_probs has shape {model_probs.shape}; "
            f"predicting ids[1:] needs {true_probs.shape}"
        )
    precision, recall = end_precision_recall(model_probs, targets, list(vocab).index(END))
    return {
        "loss": cross_entropy(model_probs, targets),
        "optimal_loss": cross_entropy(true_probs, targets),
        "loss_gap": loss_gap(model_probs, true_probs, targets),
        "accuracy": accuracy(model_probs, targets),
        "optimal_accuracy": accuracy(true_probs, targets),
        "kl": mean_kl(true_probs, model_probs),
        "unaffordable_mass": unaffordable_mass(
            model_probs, truth.unaffordable[1:], truth.move_next[1:]
        ),
        "end_precision": precision,
        "end_recall": recall,
    }
