"""Pure scores of next-token predictions against the true distribution.

Every function takes rows aligned position by position: ``probs`` / ``model_probs`` /
``true_probs`` (N, V) are distributions over the vocabulary for N predicted tokens and
``targets`` (N,) the tokens that came. numpy arrays or CPU torch tensors.
"""

from __future__ import annotations

import numpy as np

# Floor for a model's probability inside a log: softmax outputs underflow to 0 in float32,
# and one such row would make a whole-stream mean infinite.
TINY = 1e-30


def _np(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def cross_entropy(probs, targets) -> float:
    """Mean -log probs[i, targets[i]] in nats/token."""
    probs, targets = _np(probs), np.asarray(targets)
    return float(-np.log(np.maximum(probs[np.arange(len(targets)), targets], TINY)).mean())


def accuracy(probs, targets) -> float:
    """Fraction of rows whose argmax (lowest id on ties) is the target."""
    return float((_np(probs).argmax(axis=1) == np.asarray(targets)).mean())


def loss_gap(model_probs, true_probs, targets) -> float:
    """The model's cross-entropy minus the optimum's on the same targets (nats/token)."""
    return cross_entropy(model_probs, targets) - cross_entropy(true_probs, targets)


def mean_kl(true_probs, model_probs) -> float:
    """Mean over rows of KL(true || model) = sum_v p log(p / q), in nats."""
    p, q = _np(true_probs), np.maximum(_np(model_probs), TINY)
    safe_p = np.where(p > 0, p, 1.0)  # 0 log 0 = 0
    return float((p * np.log(safe_p / q)).sum(axis=1).mean())


def unaffordable_mass(model_probs, unaffordable, move_next) -> float:
    """Mean probability the model puts on moves the player to move cannot afford.

    ``unaffordable`` (N, V) bool marks those moves; the mean is over rows where
    ``move_next`` (N,) bool says a move comes next (nan if there are none).
    """
    mass = (_np(model_probs) * np.asarray(unaffordable)).sum(axis=1)
    move_next = np.asarray(move_next, dtype=bool)
    return float(mass[move_next].mean()) if move_next.any() else float("nan")


def end_precision_recall(model_probs, targets, end_id: int) -> tuple[float, float]:
    """How well the model's argmax calls the end of a game.

    "end" comes exactly after a deadly pair's ","; precision = P(next is end | argmax is
    end), recall = P(argmax is end | next is end). An empty denominator scores 0.
    """
    called = _np(model_probs).argmax(axis=1) == end_id
    came = np.asarray(targets) == end_id
    hits = (called & came).sum()
    precision = hits / called.sum() if called.any() else 0.0
    recall = hits / came.sum() if came.any() else 0.0
    return float(precision), float(recall)
