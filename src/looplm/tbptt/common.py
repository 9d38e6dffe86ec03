"""What every strategy shares: the yield type, the default loss, how a chunk is run,
and the checks that turn bad arguments into a :class:`LooplmError`."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch
from torch import Tensor

from looplm.errors import LooplmError
from looplm.state import State, bad_leaf, detach_state

Forward = Callable[[Tensor, State], tuple[Any, State]]
"""Runs one chunk: ``forward(x, state) -> (out, state)``, x a slice of the inputs along
time (``(bs, n, ...)`` for ``time_dim=1``). Defaults to the model. ``out`` may be any
object (a tensor, a tuple of logits and activations, a dict): only ``loss_fn`` reads it."""

LossFn = Callable[[Any, Tensor], Tensor]
"""``loss_fn(out, targets) -> summed loss`` (a 0-dim tensor), targets the matching slice of
the targets. It must be a sum over positions: a stride may be run in several chunks whose
losses are added, and the strategies divide by bs x the stride's length themselves. For
(bs, T, features) data, ``F.mse_loss(out, y, reduction="sum")`` gives the squared error
summed over the features, averaged over rows and steps."""


class TBPTTStep(NamedTuple):
    """What a strategy yields once per update, after the update's gradients were
    added to the parameters' ``.grad``.

    loss: 0-dim detached tensor, the update's mean loss (no ``.item()``: the caller
        decides when to synchronise with the device).
    state: the detached state after the steps processed so far (None for zeros).
    n_tokens: bs x the number of steps the loss was averaged over (tokens for a
        language model); the caller can weigh losses or scale a learning rate with it.
    """

    loss: Tensor
    state: State
    n_tokens: int


def model_input(x: Tensor) -> Tensor:
    """What the model is given: ``x`` itself, except integer ids of a dtype that
    ``nn.Embedding`` cannot index with (uint8, uint16, uint32, int8, int16), widened to
    int64. Token streams are stored narrow to save memory; floats are never cast."""
    if x.is_floating_point() or x.is_complex() or x.dtype in (torch.bool, torch.int32, torch.int64):
        return x
    return x.long()


def check_count(name: str, value: int, minimum: int = 1) -> None:
    """Refuse a step count that is not an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise LooplmError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_stream(inputs: Tensor, targets: Tensor, time_dim: int = 1) -> tuple[int, int]:
    """Return (bs, T) of a stream with the batch on dim 0 and time on ``time_dim``: inputs
    and targets agree on both sizes (their other dims are the model's and the loss's)."""
    if not isinstance(inputs, Tensor) or not isinstance(targets, Tensor):
        raise LooplmError(f"inputs and targets must be tensors with the batch on dim 0 and time on dim "
                          f"{time_dim}, got {type(inputs).__name__} and {type(targets).__name__}")
    shapes = f"{tuple(inputs.shape)} and {tuple(targets.shape)}"
    if min(inputs.dim(), targets.dim()) <= time_dim:
        raise LooplmError(f"inputs and targets need a time dim {time_dim} after the batch dim 0 "
                          f"(e.g. (bs, T) for time_dim=1), got shapes {shapes}")
    T = inputs.shape[time_dim]
    if inputs.shape[0] != targets.shape[0] or T != targets.shape[time_dim] or T < 1:
        raise LooplmError(f"inputs and targets must have the same batch size (dim 0) and the same "
                          f"number of steps >= 1 (dim {time_dim}), got {shapes}")
    return inputs.shape[0], T


def _state_problem(state: object) -> str | None:
    name = bad_leaf(state)
    return None if name is None else f"a leaf of type {name}"


def checked_state(state: object) -> State:
    """The caller's initial ``state`` detached (it is a constant), or a LooplmError."""
    problem = _state_problem(state)
    if problem is not None:
        raise LooplmError(f"the initial state must be a pytree of tensors (tensor, tuple, list, dict; "
                          f"None leaves allowed), got {problem}")
    return detach_state(state)


def run_chunk(forward: Forward, x: Tensor, state: State) -> tuple[Any, State]:
    """One call of ``forward``, refusing a model whose state TBPTT cannot carry."""
    out, new_state = forward(model_input(x), state)
    problem = _state_problem(new_state)
    if problem is not None:
        raise LooplmError(f"the model returned a state with {problem}; a state must be a pytree of "
                          "tensors (tensor, tuple, list, dict; None leaves allowed)")
    return out, new_state


def no_grad_loss(forward: Forward, loss_fn: LossFn, x: Tensor, y: Tensor, state: State) -> tuple[Tensor, State]:
    """Run a chunk that the gradient must not see; return (summed loss, state)."""
    with torch.no_grad():
        out, state = run_chunk(forward, x, state)
        return loss_fn(out, y), state
