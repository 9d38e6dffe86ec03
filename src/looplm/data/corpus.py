"""A corpus: a vocab and a token stream, with its train/valid split."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from looplm.data.batching import StreamBatches, n_samples, split_stream, stream_batches
from looplm.data.vocab import Vocab


@dataclass(frozen=True)
class Corpus:
    """``tokens`` (N,) int64 ids of the whole stream. Unless the source gives its own
    ``valid_tokens``, the last ``valid_pct`` of the stream's samples are validation,
    cut as the chapter cuts them (see :func:`split_stream`)."""

    name: str
    vocab: Vocab
    tokens: Tensor
    n_lines: int
    valid_pct: float = 0.2
    valid_tokens: Tensor | None = None

    def split(self, sl: int) -> tuple[Tensor, Tensor]:
        """(train, valid) streams for samples of ``sl`` tokens."""
        if self.valid_tokens is not None:
            return self.tokens, self.valid_tokens
        return split_stream(self.tokens, sl, self.valid_pct)

    def batches(self, bs: int, sl: int, layout: str, rank: int = 0, world_size: int = 1,
                group: bool = True) -> tuple[StreamBatches, StreamBatches]:
        """Train and valid batches of this corpus (see :func:`stream_batches`)."""
        train, valid = self.split(sl)
        return (stream_batches(train, bs, sl, layout, rank, world_size, group),
                stream_batches(valid, bs, sl, layout, rank, world_size, group))

    def show_batch(self, bs: int = 64, sl: int = 16, layout: str = "every", valid: bool = False, n: int = 3,
                   group: bool = True, rows: int | None = 8) -> str:
        """The first ``n`` batches as text, each row's target beside it (:mod:`looplm.data.show`)."""
        from looplm.data.show import show_batch  # show decodes with the tokenizers, which know corpora

        return show_batch(self, bs, sl, layout, valid, n, group, rows)

    @property
    def n_tokens(self) -> int:
        return len(self.tokens) + (0 if self.valid_tokens is None else len(self.valid_tokens))

    def describe(self) -> dict:
        """Counts, and the baseline: the most common target of the validation samples of
        three tokens (the chapter's "always predict 'thousand'" accuracy)."""
        _, valid = self.split(3)
        targets = valid[3 : n_samples(len(valid), 3) * 3 + 1 : 3]
        counts = torch.bincount(targets, minlength=len(self.vocab))
        top = int(counts.argmax())
        return {
            "name": self.name,
            "n_lines": self.n_lines,
            "n_tokens": self.n_tokens,
            "vocab_size": len(self.vocab),
            "n_samples_3": n_samples(self.n_tokens, 3),
            "top_token": self.vocab.itos[top],
            "baseline_accuracy": float(counts[top]) / len(targets),
        }


def corpus_from_tokens(name: str, tokens: list[str], n_lines: int, **kwargs) -> Corpus:
    vocab = Vocab.from_tokens(tokens)
    return Corpus(name, vocab, torch.from_numpy(vocab.encode(tokens)), n_lines, **kwargs)

