"""The seed answer's two stateless strategies: every window starts from a fresh state.

Windows of k steps advance by a stride of k - overlap (or k - burn); the last one
is cut at the stream's end, and no window starts once one has reached it::

    overlapping_chunks(k=4, overlap=1), T = 10     position  0 1 2 3 4 5 6 7 8 9
    window 0                                                 # # # #
    window 1                                                       # # # #
    window 2                                                             # # # #
                                                             (fresh state each time)

    burn_in(k=4, burn=2), T = 9
    window 0                                                 . . # #
    window 1                                                     . . # #
    window 2                                                         . . # #
    window 3                                                             . . #

``#`` trained (loss and gradient), ``.`` run without gradient to build the state.
Overlapping chunks train on every position of a window, so an overlapped position
is trained once per window that holds it. Burn-in trains each position once,
except the first ``burn`` of the stream, which only ever serve as context.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor, nn

from looplm.errors import LooplmError
from looplm.state import detach_state
from looplm.tbptt.common import (
    Forward,
    LossFn,
    TBPTTStep,
    check_count,
    check_stream,
    run_chunk,
)
from looplm.losses import summed_cross_entropy


def overlapping_chunks(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    k: int,
    overlap: int = 0,
    loss_fn: LossFn | None = None,
    *,
    forward: Forward | None = None,
    first: int = 0,
) -> Iterator[TBPTTStep]:
    """One update per window of k steps from a fresh state; windows start k - overlap apart.

    inputs, targets: (bs, T). Each update's gradient and reported loss are the mean
    loss over its whole window (bs x window length positions); the yielded state is
    the window's final state. ``forward`` and ``loss_fn`` as in :func:`truncated_bptt`.
    ``first`` skips the windows before it (no window depends on another: a resumed epoch
    continues exactly).
    """
    check_count("k", k)
    check_count("overlap", overlap, minimum=0)
    check_count("first", first, minimum=0)
    if overlap >= k:
        raise LooplmError(f"overlap must be smaller than the window k={k}, got overlap={overlap}")
    check_stream(inputs, targets)
    return _windows(model if forward is None else forward, loss_fn or summed_cross_entropy,
                    inputs, targets, k, overlap, trained_from=0, first=first)


def burn_in(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    k: int,
    burn: int,
    loss_fn: LossFn | None = None,
    *,
    forward: Forward | None = None,
    first: int = 0,
) -> Iterator[TBPTTStep]:
    """One update per window of k steps from a fresh state: ``burn`` steps without
    gradient build the state, the remaining k - burn are trained. Windows start
    k - burn apart, so trained spans tile the stream after its first ``burn`` steps.

    inputs, targets: (bs, T) with T > burn. Gradient and reported loss are the mean
    over the trained positions. ``forward``, ``loss_fn`` and ``first`` as in
    :func:`overlapping_chunks`.
    """
    check_count("k", k)
    check_count("burn", burn, minimum=0)
    check_count("first", first, minimum=0)
    if burn >= k:
        raise LooplmError(f"a burn-in of {burn} steps leaves nothing to train in windows of k={k}")
    _, T = check_stream(inputs, targets)
    if T <= burn:
        raise LooplmError(f"a burn-in of {burn} steps leaves nothing to train in a stream of {T} steps")
    return _windows(model if forward is None else forward, loss_fn or summed_cross_entropy,
                    inputs, targets, k, burn, trained_from=burn, first=first)


def _windows(forward: Forward, loss_fn: LossFn, inputs: Tensor, targets: Tensor, k: int,
             overlap: int, trained_from: int, first: int) -> Iterator[TBPTTStep]:
    """Windows [b, min(b + k, T)) for b = 0, k - overlap, ... until one reaches T, from window
    ``first`` on; the first ``trained_from`` steps of each run without gradient and loss."""
    bs, T = inputs.shape[:2]
    for b in range(first * (k - overlap), max(T - overlap, 1), k - overlap):
        e, m = min(b + k, T), b + trained_from
        state = None
        if m > b:
            with torch.no_grad():
                _, state = run_chunk(forward, inputs[:, b:m], None)
        out, state = run_chunk(forward, inputs[:, m:e], state)
        n_tokens = bs * (e - m)
        loss = loss_fn(out, targets[:, m:e]) / n_tokens
        loss.backward()
        yield TBPTTStep(loss.detach(), detach_state(state), n_tokens)
