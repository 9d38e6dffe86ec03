"""Keep a retained graph valid while the optimiser changes the weights in place.

``stored`` TBPTT keeps the graph of a chunk alive for several updates, and the
caller runs ``optimizer.step()`` between them. Autograd saved the parameters
themselves for the backward (``W`` in ``x @ W.T``), so the in-place step would
make the next backward through that graph fail with "modified by an inplace
operation" (or, for ops autograd does not check, silently use the new weights).

Inside :func:`frozen_weights`, a saved-tensor hook swaps every saved tensor that
lives in a parameter's storage for a copy taken at forward time. The copy is
only the value the backward formula reads: the gradient still flows to the
parameter and accumulates into its ``.grad``. So the backward through a
retained graph uses the weights of the forward that built it, and the copies
die with the graph.

Saved-tensor hooks switch off autograd's own check that a saved activation was
not modified in place, so the hook re-does that check for everything else.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator

import torch
from torch import Tensor


class _Saved:
    """A saved activation and its version at save time, checked again at unpack.

    It holds the tensor detached: a saved output holding its own ``grad_fn`` would
    make a reference cycle through the graph that Python's collector cannot see,
    and leak the graph. The detached alias shares the version counter.
    """

    __slots__ = ("tensor", "version")

    def __init__(self, tensor: Tensor):
        self.tensor, self.version = tensor.detach(), tensor._version


def _unpack(saved: Tensor | _Saved) -> Tensor:
    if isinstance(saved, Tensor):
        return saved
    if saved.tensor._version != saved.version:
        raise RuntimeError(
            "one of the variables needed for gradient computation has been modified by an "
            f"inplace operation: saved at version {saved.version}, now at {saved.tensor._version}"
        )
    return saved.tensor


@contextmanager
def frozen_weights(params: Iterable[Tensor]) -> Iterator[None]:
    """Within the block, graphs save copies of ``params`` instead of ``params`` themselves.

    One copy per distinct parameter view per block: a weight saved at every time
    step (``W_hh`` of an unrolled LSTM) is copied once. Open one block per update,
    since the weights may change between updates.
    """
    storages = {p.untyped_storage().data_ptr() for p in params}
    copies: dict[tuple, Tensor] = {}

    def pack(t: Tensor) -> Tensor | _Saved:
        if t.layout != torch.strided or t.untyped_storage().data_ptr() not in storages:
            return _Saved(t)
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), t.shape, t.stride(), t.dtype)
        if key not in copies:
            copies[key] = t.detach().clone()
        return copies[key]

    with torch.autograd.graph.saved_tensors_hooks(pack, _unpack):
        yield
