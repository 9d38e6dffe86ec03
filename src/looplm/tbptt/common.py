"""What every strategy shares: the yield type, the default loss, how a chunk is run,
and the checks that turn bad arguments into a :class:`LooplmError`."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from looplm.errors import LooplmError
from looplm.state import State, detach_state

Forward = Callable[[Tensor, State], tuple[Any, State]]
"""Runs one chunk: ``forward(x, state) -> (out, state)``, x (bs, n). Defaults to the model."""

LossFn = Callable[[Any, Tensor], Tensor]
"""``loss_fn(out, targets) -> summed loss`` (a scalar), targets (bs, n). It must be a sum
over positions: a stride may be run in several pieces whose losses are added, and the
strategies divide by the number of target positions themselves."""


class TBPTTStep(NamedTuple):
    """What a strategy yields once per update, after the update's gradients were
    added to the parameters' ``.grad``.

    loss: 0-dim detached tensor, the update's mean loss (no ``.item()``: the caller
        decides when to synchronise with the device).
    state: the detached state after the steps processed so far (None for zeros).
    n_tokens: bs x the number of positions the loss was averaged over; the caller
        can weigh losses or scale a learning rate with it.
    """

    loss: Tensor
    state: State
    n_tokens: int


def summed_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy summed over every position: logits (bs, n, vocab), targets (bs, n)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum")


def check_count(name: str, value: int, minimum: int = 1) -> None:
    """Refuse a step count that is not an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise LooplmError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_stream(inputs: Tensor, targets: Tensor) -> tuple[int, int]:
    """Return (bs, T) of a stream laid out in rows: inputs and targets both (bs, T), T >= 1."""
    if not isinstance(inputs, Tensor) or not isinstance(targets, Tensor):
        raise LooplmError("inputs and targets must be tensors of shape (bs, T)")
    if inputs.dim() != 2 or inputs.shape != targets.shape or inputs.shape[1] < 1:
        raise LooplmError(
            f"inputs and targets must both be (bs, T) with T >= 1, got {tuple(inputs.shape)} "
            f"and {tuple(targets.shape)}"
        )
    return inputs.shape[0], inputs.shape[1]


def _is_state(state: object) -> bool:
    if state is None or isinstance(state, Tensor):
        return True
    return isinstance(state, tuple) and bool(state) and all(isinstance(t, Tensor) for t in state)


def checked_state(state: object) -> State:
    """The caller's initial ``state`` detached (it is a constant), or a LooplmError."""
    if not _is_state(state):
        raise LooplmError(
            f"the initial state must be None, a tensor or a tuple of tensors (batch on dim 1), "
            f"got {type(state).__name__}"
        )
    return detach_state(state)


def run_chunk(forward: Forward, x: Tensor, state: State) -> tuple[Any, State]:
    """One call of ``forward``, refusing a model whose state TBPTT cannot carry."""
    out, new_state = forward(x, state)
    if not _is_state(new_state):
        raise LooplmError(
            f"the model returned a state of type {type(new_state).__name__}; a looplm model's state "
            "must be None, a tensor or a tuple of tensors (batch on dim 1)"
        )
    return out, new_state


def no_grad_loss(forward: Forward, loss_fn: LossFn, x: Tensor, y: Tensor, state: State) -> tuple[Tensor, State]:
    """Run a chunk that the gradient must not see; return (summed loss, state)."""
    with torch.no_grad():
        out, state = run_chunk(forward, x, state)
        return loss_fn(out, y), state
