r"""Stream batching: a flat token stream laid into ``bs`` rows that continue across batches.

This is the chapter's ``group_chunks`` done with one ``view`` instead of a
Python loop. Cut the stream into samples of ``sl`` tokens; with
``m = n_samples // bs`` samples per row, row j holds samples j*m .. j*m+m-1
and batch k is column block k. For a stream t0 t1 t2 ... with bs=3, sl=2::

    stream:  t0 t1 | t2 t3 | t4 t5 | t6 t7 | t8 t9 | t10 t11 | t12 ...
             \___ sample 0, 1, 2, ...  (n_samples = (N-1) // sl; m = n_samples // bs = 2)

                 batch 0     batch 1
    row 0:      t0  t1      t2  t3       <- row j continues itself from batch to batch
    row 1:      t4  t5      t6  t7
    row 2:      t8  t9      t10 t11      (t12 ... dropped: every batch is full)

    layout "every" (lm4 on): targets are the inputs shifted by one token:
    row 0:      t1  t2      t3  t4
    layout "last" (lm1-lm3): one target, the token after the sample:
    row 0:      t2          t4

Batch k, row j is sample ``j*m + k``: exactly ``group_chunks(samples, bs)``.
Tail tokens that do not fill a whole batch are dropped, never rows.

For data-parallel training, rank r of n takes rows ``r*bs/n .. (r+1)*bs/n - 1``
of this layout, so each row still continues across batches on its own rank and
the union of the ranks' rows is the single-process layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Literal

import torch
from torch import Tensor

from looplm.errors import LooplmError

Layout = Literal["every", "last"]
LAYOUTS: tuple[str, ...] = ("every", "last")


def n_samples(n_tokens: int, sl: int) -> int:
    """How many samples of ``sl`` inputs (each with its target) a stream holds."""
    return max(n_tokens - 1, 0) // sl


@dataclass(frozen=True)
class StreamBatches:
    """The batches of one stream, in order. ``inputs`` (bs, m*sl); ``targets``
    (bs, m*sl) for layout "every" or (bs, m) for layout "last"."""

    inputs: Tensor
    targets: Tensor
    sl: int
    layout: Layout

    @property
    def bs(self) -> int:
        return self.inputs.shape[0]

    def __len__(self) -> int:
        return self.inputs.shape[1] // self.sl

    @property
    def n_targets(self) -> int:
        return self.targets.numel()

    def batch(self, k: int) -> tuple[Tensor, Tensor]:
        """Batch k: x (bs, sl) and y (bs, sl) or (bs,), int64 whatever the stream's dtype
        (a text stream is a uint16/uint32 memmap: only this batch is converted)."""
        x = self.inputs[:, k * self.sl : (k + 1) * self.sl]
        y = self.targets[:, k * self.sl : (k + 1) * self.sl] if self.layout == "every" else self.targets[:, k]
        return x.long(), y.long()

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return (self.batch(k) for k in range(len(self)))

    def to(self, device: torch.device | str) -> "StreamBatches":
        return StreamBatches(self.inputs.to(device), self.targets.to(device), self.sl, self.layout)


def check_divisible(bs: int, world_size: int) -> None:
    """Each of ``world_size`` ranks takes ``bs / world_size`` rows: refuse a bs that does not split."""
    if bs % world_size:
        multiple = max(world_size, bs // world_size * world_size)
        raise LooplmError(f"--bs {bs} is not divisible by the world size {world_size}: each rank takes bs/"
                          f"{world_size} rows of the stream, so use a multiple of {world_size} (e.g. --bs {multiple})")


def stream_batches(
    tokens: Tensor,
    bs: int,
    sl: int,
    layout: Layout = "every",
    rank: int = 0,
    world_size: int = 1,
    group: bool = True,
) -> StreamBatches:
    """Lay ``tokens`` (N,) into ``bs`` rows of full batches; see the module diagram.

    ``bs`` is the global batch size; rank ``rank`` of ``world_size`` gets its
    ``bs // world_size`` rows. ``group=False`` puts consecutive samples in each
    batch instead (batch k, row j is sample ``k*bs + j``: the chapter's data for
    the stateless LMModel1-2, whose rows do not continue across batches).
    """
    if layout not in LAYOUTS:
        raise LooplmError(f"unknown batch layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    if bs < 1 or sl < 1:
        raise LooplmError(f"bs and sl must be at least 1, got bs={bs}, sl={sl}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise LooplmError(f"rank {rank} is not one of world_size={world_size} ranks")
    check_divisible(bs, world_size)
    tokens = tokens.reshape(-1)
    per_row = n_samples(len(tokens), sl) // bs
    if per_row == 0:
        raise LooplmError(
            f"the stream of {len(tokens)} tokens is too short for bs={bs} x sl={sl} "
            f"(it needs at least bs*sl+1 = {bs * sl + 1} tokens): lower bs or sl"
        )
    used = bs * per_row * sl
    inputs = tokens[:used].view(bs, per_row * sl)
    if layout == "every":
        targets = tokens[1 : used + 1].view(bs, per_row * sl)
    else:
        targets = tokens[sl : used + 1 : sl].view(bs, per_row)
    if not group:
        inputs, targets = _consecutive(inputs, bs, sl), _consecutive(targets, bs, sl if layout == "every" else 1)
    rows = slice(rank * bs // world_size, (rank + 1) * bs // world_size)
    return StreamBatches(inputs[rows], targets[rows], sl, layout)


def _consecutive(grouped: Tensor, bs: int, width: int) -> Tensor:
    """Reorder (bs, m*width) so that batch k, row j holds sample k*bs + j."""
    samples = grouped.reshape(-1, width)  # (bs*m, width): samples in stream order
    return samples.view(-1, bs, width).transpose(0, 1).reshape(bs, -1)


def split_stream(tokens: Tensor, sl: int, valid_pct: float) -> tuple[Tensor, Tensor]:
    """Split a stream at a sample boundary, as the chapter splits its samples.

    The chapter cuts its list of samples at ``int(n_samples * 0.8)``; cutting the
    stream at ``cut * sl`` (the valid part starting with the last train target)
    gives exactly those samples to each side.
    """
    if not 0.0 < valid_pct < 1.0:
        raise LooplmError(f"valid_pct must be between 0 and 1, got {valid_pct}")
    total = n_samples(len(tokens), sl)
    cut = int(total * (1 - valid_pct))
    if cut == 0 or cut == total:
        raise LooplmError(
            f"the stream of {len(tokens)} tokens is too short to split into train and valid at sl={sl}"
        )
    return tokens[: cut * sl + 1], tokens[cut * sl :]
