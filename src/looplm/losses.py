"""The language-model losses, written once: cross-entropy over every position, and perplexity."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor


def summed_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy summed over every position: logits (..., vocab), targets (...) class
    indices of any integer dtype (a uint16 token stream is widened here, one slice at a time)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).long(), reduction="sum")


def mean_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy: logits (..., vocab), targets (...)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def top_token(logits: Tensor) -> Tensor:
    """The most likely token at each position: logits (..., vocab) -> ids (...), the first of
    ties, as ``argmax(-1)``. ``max(-1).indices`` is the same answer in a third to a half of
    the CPU time (20x35 rows of 10,000 logits: 7.4 ms against 15.7), which was a fifth of a
    word-level validation pass."""
    return logits.max(-1).indices


def perplexity(loss: float) -> float:
    """exp(loss) in nats; a diverged loss gives a huge number, not an OverflowError (exp(710)
    overflows a float)."""
    return math.exp(min(loss, 700.0))
