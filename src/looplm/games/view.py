r"""The best loss of a model that sees only a few tokens, not the whole game so far.

A model reading samples cut every ``stride`` tokens (samples start at 0, stride, 2*stride,
... of a stream that starts at a game's start) sees the ``reads`` tokens at the start of
each sample and predicts the token at offset ``target`` (6 for the notebook's samples)::

    stream:   t0 t1 t2 t3 t4 t5 t6 | t6 ...
    view V:   t0 t1 t2                  (reads = 3)
    target T:                   t6      (target = 6)

The best any such model can do is P(T | V), and its expected loss the conditional entropy
H(T | V). We know P(T | H) exactly, H being everything before T (``stream_truth``), and
since V is part of H, P(T | V) = E[P(T | H) | V]: the mean of the exact distributions over
all samples with the same view. Averaging exact distributions instead of counting targets
removes the targets' own sampling noise (a Rao-Blackwellised estimate). Over N samples in
K independent chunks of games::

    P(T | V = v) ~ mean of P(T | H_i) over samples i with V_i = v
    H(T | V)     ~ sum_v  n_v / N * entropy(P(T | V = v))

with its sampling error the spread of the K chunks' estimates over sqrt(K).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np

from looplm.games.document import VOCAB, encode, games_to_text, generate_games
from looplm.games.optimum import stream_truth

_BASE = len(VOCAB) + 1  # view keys: the visible ids as digits of this base


def sample_starts(n_tokens: int, stride: int, target: int) -> np.ndarray:
    """Start positions 0, stride, ... of every sample whose target is inside the stream."""
    return np.arange(0, n_tokens - target, stride)


def view_keys(ids: np.ndarray, starts: np.ndarray, reads: int) -> np.ndarray:
    """One int64 per sample naming its view: the ``reads`` ids from each start."""
    key = np.zeros(len(starts), np.int64)
    for k in range(reads):
        key = key * _BASE + ids[starts + k]
    return key


@dataclass(frozen=True)
class ViewTable:
    """P(T | V) for every view seen: ``keys`` (n,) sorted, ``probs`` (n, V), ``counts`` (n,)."""

    keys: np.ndarray
    probs: np.ndarray
    counts: np.ndarray

    def entropy(self) -> float:
        """H(T | V) in nats: each view's entropy weighted by how often it occurs."""
        p = self.probs
        h = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=1)
        return float(np.sum(h * self.counts) / self.counts.sum())

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """P(T | V) (n, V) for views ``keys``; a view never seen gets the marginal distribution."""
        at = np.clip(np.searchsorted(self.keys, keys), 0, len(self.keys) - 1)
        seen = self.keys[at] == keys
        marginal = (self.probs * self.counts[:, None]).sum(0) / self.counts.sum()
        return np.where(seen[:, None], self.probs[at], marginal)


def _sums(ids: np.ndarray, reads: int, stride: int, target: int, players: str):
    """(unique keys, summed exact distributions, counts) of one stream's samples."""
    probs = stream_truth(ids, players).probs
    starts = sample_starts(len(ids), stride, target)
    keys, inverse = np.unique(view_keys(ids, starts, reads), return_inverse=True)
    sums = np.zeros((len(keys), probs.shape[1]))
    np.add.at(sums, inverse, probs[starts + target])
    return keys, sums, np.bincount(inverse, minlength=len(keys))


def _merge(parts) -> ViewTable:
    keys = np.concatenate([p[0] for p in parts])
    sums = np.concatenate([p[1] for p in parts])
    counts = np.concatenate([p[2] for p in parts])
    uniq, inverse = np.unique(keys, return_inverse=True)
    total = np.zeros((len(uniq), sums.shape[1]))
    np.add.at(total, inverse, sums)
    n = np.bincount(inverse, weights=counts, minlength=len(uniq))
    return ViewTable(uniq, total / n[:, None], n)


@dataclass(frozen=True)
class ViewLimit:
    """H(T | V) estimated from ``n_samples`` samples of ``n_games`` fresh games, with the
    standard error from ``chunks`` independent chunks, and the table P(T | V) itself."""

    reads: int
    entropy: float
    stderr: float
    n_samples: int
    n_games: int
    chunks: int
    table: ViewTable


def view_limit(reads: int, stride: int = 6, target: int = 6, players: str = "random,random",
               n_games: int = 400_000, chunks: int = 8, seed: int = 1000, also=None) -> ViewLimit:
    """H(T | V) for views of ``reads`` tokens (see the module diagram), over ``n_games`` games
    generated in ``chunks`` streams with seeds ``seed``, ``seed + 1``, ... (each starts at a game).

    ``also``: a stream (ids from a game start) whose samples join the table but not the entropy
    estimate, so every view of that stream has its P(T | V) (the stream a model is scored on)."""
    parts = []
    for c in range(chunks):
        games = generate_games(max(n_games // chunks, 1), players, seed + c)
        parts.append(_sums(encode(games_to_text(games)), reads, stride, target, players))
    entropy = _merge(parts).entropy()
    per_chunk = [_merge([p]).entropy() for p in parts]
    stderr = statistics.stdev(per_chunk) / len(parts) ** 0.5 if len(parts) > 1 else float("nan")
    extra = [] if also is None else [_sums(np.asarray(also), reads, stride, target, players)]
    n = sum(int(p[2].sum()) for p in parts)
    return ViewLimit(reads, entropy, stderr, n, n_games, chunks, _merge(parts + extra))


def scored_view(ids: np.ndarray, limit: ViewLimit, starts: np.ndarray, target: int) -> dict[str, float]:
    """The best view-limited model scored on a stream: its loss and accuracy on the samples
    at ``starts`` (targets at ``starts + target``), and the exact optimum on the same targets."""
    ids = np.asarray(ids)
    p = limit.table.lookup(view_keys(ids, starts, limit.reads))
    y = ids[starts + target]
    truth = stream_truth(ids).probs[starts + target]
    rows = np.arange(len(y))
    return {
        "view_loss": float(-np.mean(np.log(p[rows, y]))),
        "view_accuracy": float(np.mean(p.argmax(1) == y)),
        "optimal_loss": float(-np.mean(np.log(truth[rows, y]))),
        "optimal_accuracy": float(np.mean(truth.argmax(1) == y)),
    }
