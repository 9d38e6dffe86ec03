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
    g, cols = _game_ids(ids, vocab)
    T = len(g)
    if T == 0:
        raise LooplmError("the stream is empty")
    t = np.arange(T)
    is_move = g < N_MOVES
    prev = np.concatenate([[_DOT], g[:-1]])  # a stream starts as if after a game's "."
    starts = np.flatnonzero(prev == _DOT)
    r = t - starts[np.searchsorted(starts, t, side="right") - 1]
    k = r % 4

    # Format: which kind of token each r % 4 allows (rules are checked by probability below).
    shaped = np.select(
        [k == 0, k == 1, k == 2],
        [is_move | ((g == _END) & (r > 0)), np.where(prev == _END, g == _DOT, g == _TO), is_move],
        g == _COMMA,
    )
    if not shaped.all():
        _fail(g, int(np.argmin(shaped)), "out of the 'a to b , ... end .' format")

    # Pairs: their first move at f, energies before (e1, e2) in game order, filled one pair
    # index at a time because each pair's energies depend on the pair before.
    f = np.flatnonzero((k == 0) & is_move)
    a = g[f]
    b = np.where(f + 2 < T, g[np.minimum(f + 2, T - 1)], 0)  # a cut-off last pair: b unused
    j = r[f] // 4
    e1, e2 = np.zeros(len(f), np.int64), np.zeros(len(f), np.int64)
    for step in range(1, int(j.max(initial=0)) + 1):
        p = np.flatnonzero(j == step)
        e1[p], e2[p] = play(e1[p - 1], e2[p - 1], a[p - 1], b[p - 1])
    after1, after2 = play(e1, e2, a, b)
    pair_of = np.zeros(T, np.int64)
    pair_of[f] = np.arange(len(f))

    probs = np.zeros((T, len(VOCAB)))
    unaffordable = np.zeros((T, len(VOCAB)), bool)
    # r % 4 == 0: a new game's first move at (0, 0), or after a pair: end or the next move.
    first = np.flatnonzero(k == 0)
    q = pair_of[np.maximum(first - 4, 0)]
    new_game = r[first] == 0
    ended = ~new_game & DEADLY[a[q], b[q]]
    m1 = np.where(new_game, 0, after1[q])
    m2 = np.where(new_game, 0, after2[q])
    probs[first[ended], _END] = 1.0
    moving = first[~ended]
    probs[moving, :N_MOVES] = p1.policy(m1[~ended], m2[~ended])
    unaffordable[moving, :N_MOVES] = ~available(m1[~ended])
    # r % 4 == 2: player 2's move, at the energies before its pair.
    second = np.flatnonzero(k == 2)
    q = pair_of[second - 2]
    probs[second, :N_MOVES] = p2.policy(e2[q], e1[q])
    unaffordable[second, :N_MOVES] = ~available(e2[q])
    probs[k == 1, np.where(prev[k == 1] == _END, _DOT, _TO)] = 1.0
    probs[k == 3, _COMMA] = 1.0

    possible = probs[t, g] > 0
    if not possible.all():
        _fail(g, int(np.argmin(possible)), f"impossible for players {p1.name},{p2.name}")
    move_next = np.zeros(T, bool)
    move_next[moving] = move_next[second] = True
    out_probs = np.zeros((T, len(vocab)))
    out_probs[:, cols] = probs
    out_unaffordable = np.zeros((T, len(vocab)), bool)
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
