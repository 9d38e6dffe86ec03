"""The AWD-LSTM's dropouts (Merity et al., 2017) as small modules, each with its ``*_p``.

Where each one acts in the AWD-LSTM::

    token ids (bs, T)
      ─► EmbeddingDropout embed_p    whole rows of the embedding: a dropped word is zeros
                                     at every position of the batch
      ─► RNNDropout input_p          one mask per sequence, the same at every step
      ─► LSTM, WeightDropout weight_p  DropConnect on weight_hh: one mask per forward call
      ─► RNNDropout hidden_p ─► next LSTM ... ─► RNNDropout output_p ─► decoder

All are the identity in eval mode. Kept values are scaled by 1/(1-p), so every activation
keeps its expected value; that is why each ``p`` must be below 1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from looplm.errors import LooplmError


def check_p(name: str, p: float) -> float:
    """``p`` if it is a dropout probability in [0, 1), else a LooplmError naming it."""
    if not 0 <= p < 1:
        raise LooplmError(f"{name} must be in [0, 1), got {p}")
    return p


# A mask element is 15 random bits: p is rounded to a multiple of 1/32768 (the drop rate is
# off by at most 1.5e-5) and the kept values are scaled by the exact inverse of the kept share.
MASK_LEVELS = 1 << 15


def dropout_mask(like: Tensor, shape: tuple[int, ...], p: float) -> Tensor:
    """A mask of ``shape`` in like's dtype and device: 0 with probability p, else 1/(1-p).

    CPU generators draw one number at a time: ``bernoulli_`` (behind ``nn.Dropout``) and
    ``rand`` spend a 32-bit draw on each element, ``bernoulli_`` slowly. Here one 64-bit draw
    of ``random_`` feeds four elements, 15 bits each; on a (32, 128, 512) activation that is
    about 2.7 ms against 7.5 ms for ``rand`` and 18 ms for ``bernoulli_`` (2 threads)::

        int64 draws   [ b63..b48 | b47..b32 | b31..b16 | b15..b0 ]    (random_ fills bits 0-62)
        int16 view        e3         e2         e1         e0       each & 0x7FFF: 0..32767
        kept          e >= round(p * 32768)  ->  1 / (1 - round(p * 32768) / 32768), else 0
    """
    n, drop = math.prod(shape), min(round(p * MASK_LEVELS), MASK_LEVELS - 1)
    draws = torch.empty((n + 3) // 4, dtype=torch.int64, device=like.device).random_()
    levels = draws.view(torch.int16)[:n].view(shape).bitwise_and_(MASK_LEVELS - 1)
    return levels.ge_(drop).to(like.dtype).mul_(MASK_LEVELS / (MASK_LEVELS - drop))


class Dropout(nn.Module):
    """``torch.nn.Dropout``'s distribution (each value zeroed with probability p, the others
    scaled by 1/(1-p)) with the mask of :func:`dropout_mask`, about 5x faster on CPU than
    ``nn.Dropout``, whose ``bernoulli_`` draws one value at a time.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = check_p("p", p)

    def forward(self, x: Tensor) -> Tensor:
        """x (...) -> same shape."""
        if not self.training or self.p == 0:
            return x
        return x * self.mask(x)

    def mask(self, x: Tensor) -> Tensor:
        """A fresh mask of x's shape and dtype: 0 with probability p, else 1/(1-p)."""
        return dropout_mask(x, tuple(x.shape), self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ChapterDropout(Dropout):
    """The chapter's dropout, written by hand: a ``bernoulli_`` mask of x's shape, fresh every
    call, zeroing each element with probability p and scaling the kept ones by 1/(1-p) (so every
    activation keeps its expected value); the identity in eval mode. ``Dropout`` above draws
    the same distribution faster; this one is the book's code, for LModel7 ``--set dropout=scratch``.
    """

    def mask(self, x: Tensor) -> Tensor:
        return x.new_empty(x.shape).bernoulli_(1 - self.p).div_(1 - self.p)


class RNNDropout(Dropout):
    """Dropout whose mask is constant along time: x (bs, T, n) times a (bs, 1, n) mask.

    Ordinary dropout would drop a different set of units at each step, which the
    recurrence turns into noise; one mask per sequence drops the same units throughout.
    """

    def mask(self, x: Tensor) -> Tensor:
        """A mask of shape (bs, 1, ...) for x (bs, T, ...), broadcast over time."""
        return dropout_mask(x, (x.shape[0], 1, *x.shape[2:]), self.p)


class EmbeddingDropout(nn.Module):
    """Drops whole rows of an embedding's weight matrix, then looks the tokens up.

    A dropped word reads as zeros wherever it appears in the batch; kept rows are scaled
    by 1/(1-embed_p). The embedding stays the wrapped ``emb`` (so a decoder can tie to it).
    """

    def __init__(self, emb: nn.Embedding, embed_p: float):
        super().__init__()
        self.emb, self.embed_p = emb, check_p("embed_p", embed_p)

    def forward(self, words: Tensor) -> Tensor:
        """words (bs, T) int -> (bs, T, emb_sz)."""
        weight = self.emb.weight                                    # (vocab_sz, emb_sz)
        if self.training and self.embed_p:
            weight = weight * dropout_mask(weight, (weight.shape[0], 1), self.embed_p)
        e = self.emb
        return F.embedding(words, weight, e.padding_idx, e.max_norm, e.norm_type,
                           e.scale_grad_by_freq, e.sparse)

    def extra_repr(self) -> str:
        return f"embed_p={self.embed_p}"


class WeightDropout(nn.Module):
    """DropConnect on some weights of a looplm recurrent layer (by default ``weight_hh_l0``).

    The weights stay the wrapped module's own parameters, never deleted nor re-registered:
    each forward draws a dropped copy, ``raw * dropout_mask(...)``, and passes it to the
    layer through its ``weights=`` argument. The raw weight gets the gradient (zero where
    dropped), and the state_dict is the module's (``module.weight_hh_l0``).
    One mask per forward call: the same dropped weight at every step of the sequence.
    """

    def __init__(self, module: nn.Module, weight_p: float, names: tuple[str, ...] = ("weight_hh_l0",)):
        super().__init__()
        self.module, self.weight_p, self.names = module, check_p("weight_p", weight_p), tuple(names)

    def dropped_weights(self) -> dict[str, Tensor]:
        """A freshly dropped copy of each weight in ``names`` (the raw one in eval mode)."""
        if not self.training or not self.weight_p:
            return {n: getattr(self.module, n) for n in self.names}
        return {n: w * dropout_mask(w, tuple(w.shape), self.weight_p)
                for n in self.names for w in (getattr(self.module, n),)}

    def forward(self, input: Tensor, hx=None):
        """The wrapped layer's forward, with the dropped weights."""
        return self.module(input, hx, weights=self.dropped_weights())

    def extra_repr(self) -> str:
        return f"weight_p={self.weight_p}, names={self.names}"
