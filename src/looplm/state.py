"""Recurrent state: what a model carries from one chunk of the stream to the next.

Every recurrent model here is a step function over chunks::

    out, state = model(x, state)      # state=None means "start from zeros"

A state is a pytree of tensors (``torch.utils._pytree``): a tensor, or tuples,
lists, dicts and namedtuples of them, nested as deep as the model likes, with
``None`` allowed as a leaf. looplm's language models use a tensor whose dim 1
is the batch (``(n_layers, bs, n_hidden)`` as in ``torch.nn.RNN``) or a tuple
``(h, c)``; a model of your own may carry ``{"lstm": (h, c), "step": n}``.
These helpers are the only code that needs to know that.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import torch
import torch.utils._pytree as pytree
from torch import Tensor

State = Any
"""A pytree whose leaves are tensors or None (see the module docstring)."""


def bad_leaf(state: object) -> str | None:
    """The type name of the first leaf of ``state`` that is neither a tensor nor None,
    or None when ``state`` is a valid state."""
    for leaf in pytree.tree_leaves(state):
        if leaf is not None and not isinstance(leaf, Tensor):
            return type(leaf).__name__
    return None


def map_state(state: State, fn: Callable[[Tensor], Tensor]) -> State:
    """Apply ``fn`` to every tensor of a state, keeping its structure and its None leaves."""
    # The states looplm's models carry, without the pytree walk (15 us against 2 for an LSTM's
    # (h, c): it runs at every update, where a small model's whole step takes ~500 us)
    if isinstance(state, Tensor):
        return fn(state)
    if type(state) is tuple and all(isinstance(t, Tensor) for t in state):
        return tuple(fn(t) for t in state)
    name = bad_leaf(state)
    if name is not None:
        raise TypeError(f"a recurrent state must be a pytree of tensors (None leaves allowed), "
                        f"got a leaf of type {name}")
    return pytree.tree_map(lambda t: None if t is None else fn(t), state)


def detach_state(state: State) -> State:
    """Cut the graph at a chunk boundary: values carried on, gradients stopped (TBPTT)."""
    return map_state(state, Tensor.detach)


def state_leaves(state: State) -> list[Tensor | None]:
    """The leaves of a state in a fixed order: two states of one structure pair up leaf by leaf."""
    return pytree.tree_leaves(state)


def state_batch_size(state: State) -> int | None:
    """The batch size a looplm model's state was made for (dim 1 of its first tensor), or
    None for no state."""
    first = next((t for t in state_leaves(state) if isinstance(t, Tensor) and t.dim() >= 2), None)
    return None if first is None else first.shape[1]


def fit_state(state: State, bs: int) -> State:
    """Return ``state`` if it was made for batch size ``bs``, else ``None`` (fresh zeros).

    This is what lets a model trained at bs=64 evaluate at bs=16 or generate at
    bs=1: a state of another batch size cannot continue these rows, so it is dropped.
    """
    return state if state_batch_size(state) == bs else None


def state_to_flat(state: State, prefix: str) -> dict[str, Tensor | str]:
    """A state as plain data: ``{prefix}.spec`` (its structure as JSON), ``{prefix}.none``
    (the positions of its None leaves, a JSON list) and one ``{prefix}.{i}`` tensor per
    tensor leaf; :func:`state_from_flat` inverts it."""
    leaves, spec = pytree.tree_flatten(state)
    flat: dict[str, Tensor | str] = {f"{prefix}.spec": pytree.treespec_dumps(spec),
                                     f"{prefix}.none": json.dumps([i for i, t in enumerate(leaves) if t is None])}
    flat.update({f"{prefix}.{i}": t for i, t in enumerate(leaves) if t is not None})
    return flat


def state_from_flat(flat: dict[str, Any], prefix: str) -> State:
    """The state that :func:`state_to_flat` wrote under ``prefix``. A tensor leaf whose tensor
    is missing is refused (ValueError): it must not come back as None, which would silently
    restart that part of the state. Data written without ``{prefix}.none`` (before it was
    recorded) cannot tell the two apart and reads a missing tensor as a None leaf."""
    spec = pytree.treespec_loads(flat[f"{prefix}.spec"])
    none_text = flat.get(f"{prefix}.none")
    if none_text is None:
        return pytree.tree_unflatten([flat.get(f"{prefix}.{i}") for i in range(spec.num_leaves)], spec)
    listed = json.loads(none_text)
    if not isinstance(listed, list) or not all(type(i) is int and 0 <= i < spec.num_leaves for i in listed):
        raise ValueError(f"{prefix}.none must list leaf positions below {spec.num_leaves}, got {none_text[:80]!r}")
    none = set(listed)
    missing = [f"{prefix}.{i}" for i in range(spec.num_leaves) if i not in none and f"{prefix}.{i}" not in flat]
    if missing:
        raise ValueError(f"the tensor {missing[0]} of the state is missing")
    both = [f"{prefix}.{i}" for i in none if f"{prefix}.{i}" in flat]
    if both:
        raise ValueError(f"the state's leaf {both[0]} is recorded as None but has a tensor")
    return pytree.tree_unflatten([None if i in none else flat[f"{prefix}.{i}"] for i in range(spec.num_leaves)], spec)


def cat_rows(first: State, rest: State) -> State:
    """Two states of one structure side by side along the batch (dim 1 of every tensor)."""
    return pytree.tree_map(lambda a, b: torch.cat([a, b], 1), first, rest)


def state_from_named(kind: str, tensors: dict[str, Tensor]) -> State:
    """The state of a looplm 0.1 checkpoint: ``kind`` "none", "tensor" or "tuple:n", its
    tensors named ``state.i`` (later checkpoints use :func:`state_to_flat`)."""
    if kind == "none":
        return None
    if kind == "tensor":
        return tensors["state.0"]
    return tuple(tensors[f"state.{i}"] for i in range(int(kind.split(":")[1])))
