"""The losses module's small pieces, checked against their plain definitions."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from looplm.losses import top_token


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=3), vocab=st.one_of(st.integers(1, 40), st.just(10_000)),
       levels=st.integers(1, 4), seed=st.integers(0, 2**31 - 1))
def test_top_token_is_argmax_even_on_ties(shape, vocab, levels, seed):
    """Few distinct values make ties common: the first of them must win, as argmax's."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randint(0, levels, (*shape, vocab), generator=g).float()
    assert torch.equal(top_token(logits), logits.argmax(-1))
