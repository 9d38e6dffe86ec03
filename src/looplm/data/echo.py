"""Echo: a synthetic stream that can only be learned by backpropagating far enough.

Tokens are drawn uniformly from ``vocab_sz`` symbols; the target at step t is
the input at step t - delay. A model must carry each token ``delay`` steps in
its state, and the gradient that teaches it to do so must travel ``delay``
steps back: TBPTT with k2 <= delay never sees a path from a loss to the input
it echoes, so the model stays at chance (1 / vocab_sz); with k2 > delay it can
learn the task exactly. ``echo_stream(6, delay=2, vocab_sz=8, seed=0)``::

    stream   4 7 5 0 3 3 3 7          (drawn with the seed; the first 2 come
    inputs       5 0 3 3 3 7           from before step 0)
    targets      4 7 5 0 3 3           targets[t] == inputs[t - 2] for t >= 2

The first ``delay`` targets echo tokens from before the stream, which no model
can know. A (n,) stream is laid into rows with ``inputs.view(bs, -1)``; the echo
then holds inside each row, except for its first ``delay`` targets.
"""

from __future__ import annotations

import torch
from torch import Tensor

from looplm.errors import LooplmError


def echo_stream(
    n_tokens: int,
    delay: int = 4,
    vocab_sz: int = 8,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Return (inputs, targets), both (n_tokens,) int64, with targets[t] == inputs[t - delay].

    The same seed gives the same stream on every device (drawn on the CPU).
    """
    for name, value, minimum in (("n_tokens", n_tokens, 1), ("delay", delay, 1), ("vocab_sz", vocab_sz, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise LooplmError(f"echo: {name} must be an integer >= {minimum}, got {value!r}")
    gen = torch.Generator().manual_seed(seed)
    stream = torch.randint(vocab_sz, (n_tokens + delay,), generator=gen).to(device)
    return stream[delay:], stream[:n_tokens]
