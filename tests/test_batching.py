"""The stream layout: batch k+1 row j continues batch k row j; nothing duplicated or skipped."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from looplm.data.batching import n_samples, split_stream, stream_batches
from looplm.errors import LooplmError


def group_chunks(ds, bs):
    """The chapter's reindexing, literally (the reference)."""
    m = len(ds) // bs
    new_ds = []
    for i in range(m):
        new_ds += [ds[i + m * j] for j in range(bs)]
    return new_ds


sizes = st.tuples(st.integers(1, 9), st.integers(1, 7), st.integers(0, 120))  # bs, sl, extra tokens


def _stream(bs, sl, extra):
    return torch.arange(bs * sl + 1 + extra)  # token value = its position


@settings(max_examples=150, deadline=None)
@given(sizes)
def test_rows_continue_and_nothing_is_skipped(sizes):
    bs, sl, extra = sizes
    tokens = _stream(bs, sl, extra)
    batches = stream_batches(tokens, bs, sl, "every")
    rows = torch.cat([x for x, _ in batches], dim=1)  # (bs, n_batches*sl)
    # inside a row, consecutive positions are consecutive tokens of the stream
    assert torch.all(rows[:, 1:] - rows[:, :-1] == 1)
    # row j+1 starts where row j ends: the rows tile a prefix of the stream exactly once
    assert torch.equal(rows.reshape(-1), tokens[: rows.numel()])
    for k in range(len(batches) - 1):
        x, _ = batches.batch(k)
        x_next, _ = batches.batch(k + 1)
        assert torch.all(x_next[:, 0] == x[:, -1] + 1)
    # every batch is full and the dropped tail is shorter than one batch's worth of samples
    assert all(x.shape == (bs, sl) for x, _ in batches)
    assert n_samples(len(tokens), sl) - len(batches) * bs < bs


@settings(max_examples=100, deadline=None)
@given(sizes)
def test_targets(sizes):
    bs, sl, extra = sizes
    tokens = _stream(bs, sl, extra)
    for x, y in stream_batches(tokens, bs, sl, "every"):
        assert torch.equal(y, x + 1)
    for x, y in stream_batches(tokens, bs, sl, "last"):
        assert torch.equal(y, x[:, -1] + 1)


@settings(max_examples=60, deadline=None)
@given(sizes)
def test_equals_the_chapters_group_chunks(sizes):
    bs, sl, extra = sizes
    tokens = _stream(bs, sl, extra)
    samples = [(tokens[i : i + sl], tokens[i + sl]) for i in range(0, n_samples(len(tokens), sl) * sl, sl)]
    expected = group_chunks(samples, bs)
    got = [(x[j], y[j]) for x, y in stream_batches(tokens, bs, sl, "last") for j in range(bs)]
    assert len(got) == len(expected)
    assert all(torch.equal(a, c) and int(b) == int(d) for (a, b), (c, d) in zip(got, expected))


@settings(max_examples=60, deadline=None)
@given(sizes, st.sampled_from([1, 2, 3, 4]))
def test_ranks_partition_the_rows(sizes, world):
    bs, sl, extra = sizes
    bs *= world
    tokens = _stream(bs, sl, extra)
    whole = stream_batches(tokens, bs, sl, "every")
    parts = [stream_batches(tokens, bs, sl, "every", rank=r, world_size=world) for r in range(world)]
    assert torch.equal(torch.cat([p.inputs for p in parts]), whole.inputs)
    assert torch.equal(torch.cat([p.targets for p in parts]), whole.targets)


def test_consecutive_order_for_stateless_models():
    x0, y0 = stream_batches(torch.arange(40), 3, 2, "last", group=False).batch(0)
    assert x0.tolist() == [[0, 1], [2, 3], [4, 5]] and y0.tolist() == [2, 4, 6]


def test_split_matches_the_chapters_sample_cut():
    tokens = torch.arange(1000)
    train, valid = split_stream(tokens, 16, 0.2)
    total = n_samples(1000, 16)
    cut = int(total * 0.8)
    assert n_samples(len(train), 16) == cut and n_samples(len(valid), 16) == total - cut
    assert int(valid[0]) == cut * 16 and int(train[-1]) == cut * 16  # last train target = first valid input


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(bs=64, sl=16), "too short"),
        (dict(bs=0, sl=4), "at least 1"),
        (dict(bs=5, sl=2, world_size=2), "not divisible"),
        (dict(bs=2, sl=2, layout="middle"), "unknown batch layout"),
    ],
)
def test_impossible_sizes_are_clear_errors(kwargs, message):
    with pytest.raises(LooplmError, match=message):
        stream_batches(torch.arange(100), **kwargs)
