"""Recurrent state: what a model carries from one chunk of the stream to the next.

Every looplm language model is a step function over chunks::

    logits, state = model(x, state)      # x: (bs, T) token ids, state=None means zeros

A state is ``None``, a tensor whose dim 1 is the batch (``(n_layers, bs, n_hidden)``
as in ``torch.nn.RNN``), or a tuple of such tensors (``(h, c)`` for an LSTM).
These helpers are the only code that needs to know that.
"""

from __future__ import annotations

from typing import Callable, Union

import torch
from torch import Tensor

State = Union[None, Tensor, tuple[Tensor, ...]]


def map_state(state: State, fn: Callable[[Tensor], Tensor]) -> State:
    """Apply ``fn`` to every tensor of a state, keeping its structure."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return fn(state)
    if isinstance(state, (tuple, list)) and all(isinstance(t, Tensor) for t in state):
        return tuple(fn(t) for t in state)
    raise TypeError(
        f"a recurrent state must be None, a tensor or a tuple of tensors, got {type(state).__name__}"
    )


def detach_state(state: State) -> State:
    """Cut the graph at a chunk boundary: values carried on, gradients stopped (TBPTT)."""
    return map_state(state, Tensor.detach)


def state_batch_size(state: State) -> int | None:
    """The batch size a state was made for (dim 1 of its tensors), or None for no state."""
    if state is None:
        return None
    first = state if isinstance(state, Tensor) else state[0]
    return first.shape[1]


def fit_state(state: State, bs: int) -> State:
    """Return ``state`` if it was made for batch size ``bs``, else ``None`` (fresh zeros).

    This is what lets a model trained at bs=64 evaluate at bs=16 or generate at
    bs=1: a state of another batch size cannot continue these rows, so it is dropped.
    """
    return state if state_batch_size(state) == bs else None
