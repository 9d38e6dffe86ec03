"""Truncated backpropagation through time, and the other ways to train on a long stream.

Every strategy is a generator over one stream laid out in rows (batch first, then
time: (bs, T) tokens, (bs, T, features) floats) that yields a :class:`TBPTTStep` once per update, after adding the update's gradients
to ``.grad``; the caller steps the optimiser between yields::

    for step in truncated_bptt(model, inputs, targets, k1=4, k2=16):
        opt.step()
        opt.zero_grad()

- :func:`truncated_bptt`: TBPTT(k1, k2) with a carried state, ``stored`` or ``recompute``;
- :class:`TBPTTStream`: the same on a stream fed in pieces (online learning, episodes);
- :func:`overlapping_chunks`: windows of k steps from a fresh state, overlapping;
- :func:`burn_in`: windows from a fresh state whose first steps only build the state.
"""

from looplm.losses import summed_cross_entropy
from looplm.tbptt.common import TBPTTStep
from looplm.tbptt.stateless import burn_in, overlapping_chunks
from looplm.tbptt.stream import MODES, TBPTTStream
from looplm.tbptt.truncated import Schedule, truncated_bptt

__all__ = [
    "MODES",
    "Schedule",
    "TBPTTStep",
    "TBPTTStream",
    "burn_in",
    "overlapping_chunks",
    "summed_cross_entropy",
    "truncated_bptt",
]
