r"""The first batches of a corpus as text (fastai's ``show_batch``; the chapter's questionnaire
item 13: "print out the first few batches of the validation set, converting the token IDs back
into English strings").

Each row of a batch is decoded with the corpus's tokenizer, its target beside it, and the
stream position of its first token, so the layout shows: in the usual layout row j of batch
k+1 starts where row j of batch k stopped (``group``), the rows of one batch lie m*sl tokens
apart::

    batch 0                                    batch 1
    row  at     input -> target                row  at     input -> target
    0    0      one . two      . two .         0    3      . three . ...
    1    m*sl   ...                            1    m*sl+3 ...
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from looplm.data.batching import StreamBatches
from looplm.data.tokenize import tokenizer_for


@dataclass(frozen=True)
class ShownRow:
    row: int
    start: int  # stream position of the row's first input token
    input: str
    target: str


def _positions(data: StreamBatches, group: bool, n_rows: int) -> Tensor:
    """(bs, n_batches) stream position of the first input token of every row of every batch."""
    import torch

    bs, m, sl = data.bs, len(data), data.sl
    j, k = torch.arange(bs)[:, None], torch.arange(m)[None, :]
    sample = j * m + k if group else k * bs + j  # see looplm.data.batching
    return sample * sl


def batch_rows(corpus, data: StreamBatches, k: int, group: bool = True, rows: int | None = None) -> list[ShownRow]:
    """Rows of batch ``k`` of ``data`` (laid out from ``corpus``, a :class:`~looplm.data.corpus.Corpus`),
    decoded to text."""
    tok = tokenizer_for(corpus)
    x, y = data.batch(k)
    starts = _positions(data, group, data.bs)[:, k]
    show = range(data.bs if rows is None else min(rows, data.bs))
    decode = lambda ids: tok.decode(ids.reshape(-1).tolist())  # noqa: E731
    return [ShownRow(j, int(starts[j]), decode(x[j]), decode(y[j])) for j in show]


def _cell(text: str, width: int) -> str:
    text = text.replace("\n", "\\n").replace("\t", "\\t")
    return text if len(text) <= width else text[: width - 1] + "…"


def show_batch(corpus, bs: int = 64, sl: int = 16, layout: str = "every", valid: bool = False,
               n: int = 3, group: bool = True, rows: int | None = 8, width: int = 48) -> str:
    """The first ``n`` batches of the train (or ``valid``) stream as a plain-text table."""
    train, valid_data = corpus.batches(bs, sl, layout, group=group)
    data = valid_data if valid else train
    how = ("row j continues in row j of the next batch" if group
           else "rows are consecutive samples: none continues in the next batch")
    lines = [f"{corpus.name} ({'valid' if valid else 'train'}): {len(data)} batches of bs {data.bs} x sl {data.sl}, "
             f"layout {layout!r} ({'a target after every token' if layout == 'every' else 'one target per row'}); {how}"]
    for k in range(min(n, len(data))):
        lines += ["", f"batch {k}", f"{'row':<4} {'at':>9}  {'input':<{width}}  target"]
        for r in batch_rows(corpus, data, k, group, rows):
            lines.append(f"{r.row:<4} {r.start:>9,}  {_cell(r.input, width):<{width}}  {_cell(r.target, width)}")
        if rows is not None and rows < data.bs:
            lines.append(f"... {data.bs - rows} more rows")
    return "\n".join(lines)
