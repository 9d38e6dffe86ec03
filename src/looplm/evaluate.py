"""Predictions over a whole stream, and what the mistakes are."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from looplm.data.batching import StreamBatches, stream_batches
from looplm.data.vocab import Vocab
from looplm.errors import LooplmError
from looplm.losses import perplexity, summed_cross_entropy, top_token
from looplm.state import cat_rows, map_state

CONTEXT = 3  # tokens of input shown beside each mistake


@dataclass
class StreamPredictions:
    """One entry per target of the stream, in row order: ``targets``, ``preds`` (N,),
    ``context`` (N, CONTEXT) the inputs just before each target (-1 where the row
    has none), and the summed cross-entropy."""

    targets: Tensor
    preds: Tensor
    context: Tensor
    loss_sum: float

    @property
    def accuracy(self) -> float:
        return (self.preds == self.targets).double().mean().item()

    @property
    def loss(self) -> float:
        return self.loss_sum / len(self.targets)


@torch.no_grad()
def stream_outputs(model: nn.Module, batches: StreamBatches) -> Iterator[tuple[Tensor, Tensor]]:
    """``(logits, targets)`` of every batch in order, the model in eval mode carrying its
    state from zeros: one pass over a stream, as validation and prediction read it."""
    model.eval()
    state = None
    for x, y in batches:
        logits, state = model(x, state)
        yield logits, y


@torch.no_grad()
def predict_stream(model: nn.Module, batches: StreamBatches) -> StreamPredictions:
    """Run ``model`` over every batch in order, carrying its state, from a zero state."""
    device = next(model.parameters()).device
    preds, loss_sum = [], torch.zeros((), dtype=torch.float64, device=device)
    for logits, y in stream_outputs(model, batches.to(device)):
        loss_sum += summed_cross_entropy(logits, y)
        preds.append(top_token(logits).reshape(y.shape[0], -1).cpu())  # (bs, sl) or (bs, 1)
    inputs, targets = batches.inputs.cpu().long(), batches.targets.cpu().long()  # text streams: uint16/32
    if batches.layout == "every":
        padded = F.pad(inputs, (CONTEXT - 1, 0), value=-1)
        context = padded.unfold(1, CONTEXT, 1)  # (bs, L, CONTEXT): the inputs up to each position
    else:
        bs, n = targets.shape
        samples = F.pad(inputs.view(bs, n, batches.sl), (CONTEXT, 0), value=-1)
        context = samples[:, :, -CONTEXT:]
    return StreamPredictions(targets.reshape(-1), torch.cat(preds, 1).reshape(-1),
                             context.reshape(-1, CONTEXT), loss_sum.item())


def error_analysis(p: StreamPredictions, vocab: Vocab, top: int = 10, boundary: str | None = ".") -> dict:
    """Accuracy per target token, the most frequent (context, target, predicted)
    mistakes, and the share of mistakes made right after ``boundary`` (for Human
    Numbers: on the first word of a number)."""
    n_vocab = len(vocab)
    wrong = p.preds != p.targets
    totals = torch.bincount(p.targets, minlength=n_vocab)
    right = torch.bincount(p.targets[~wrong], minlength=n_vocab)
    per_token = {
        vocab.itos[i]: {"accuracy": right[i].item() / totals[i].item(), "count": totals[i].item()}
        for i in torch.argsort(totals, descending=True).tolist() if totals[i] > 0
    }
    ctx = p.context[wrong].tolist()
    mistakes = Counter(
        (" ".join(vocab.itos[i] for i in c if i >= 0), vocab.itos[t], vocab.itos[q])
        for c, t, q in zip(ctx, p.targets[wrong].tolist(), p.preds[wrong].tolist())
    )
    n_wrong = int(wrong.sum())
    result = {
        "n_targets": len(p.targets),
        "n_errors": n_wrong,
        "per_token": per_token,
        "top_mistakes": [
            {"context": c, "target": t, "predicted": q, "count": k} for (c, t, q), k in mistakes.most_common(top)
        ],
    }
    if boundary is not None and boundary in vocab.stoi:
        after = p.context[:, -1] == vocab.stoi[boundary]
        result["boundary"] = boundary
        result["error_share_after_boundary"] = (wrong & after).sum().item() / max(n_wrong, 1)
        result["accuracy_after_boundary"] = (~wrong & after).sum().item() / max(after.sum().item(), 1)
        result["accuracy_elsewhere"] = (~wrong & ~after).sum().item() / max((~after).sum().item(), 1)
    return result


# -- every position of a stream, scored once ------------------------------------------------

WARMUP = 256  # tokens of context a row reads before its first scored position


def fit_layout(n_tokens: int, bs: int, sl: int) -> tuple[int, int]:
    """The (bs, sl) actually used for a stream of ``n_tokens``: as asked when the stream fills
    at least one batch, else fewer rows (and, for a very short stream, a shorter sl)."""
    if n_tokens < 2:
        raise LooplmError(f"a stream of {n_tokens} token(s) has nothing to predict: it needs at least 2")
    sl = min(sl, n_tokens - 1)
    return max(1, min(bs, (n_tokens - 1) // sl)), sl


@torch.no_grad()
def stream_logits(model: nn.Module, tokens: Tensor, bs: int, sl: int,
                  warmup: int = WARMUP) -> Iterator[tuple[Tensor, Tensor]]:
    """Predict every position 1..N-1 of ``tokens`` (N,) exactly once, batched over ``bs`` rows.

    Yields ``(positions, logits)``: ``logits`` (b, t, V) predict the tokens at stream positions
    ``positions`` (b, t). The rows are the training layout
    (:func:`looplm.data.batching.stream_batches`, L = tokens per row), with two changes so that
    no position is dropped and none but the stream's own start is read from a cold state::

        stream:  t0 ......... t(L-1) | t(L) ....... t(2L-1) | ... | t(bs*L) ... t(N-2) t(N-1)
        row 0:   t0 ......... t(L-1)                                  (zero state: the start)
        row 1:   [t(L-w) .. t(L-1)] t(L) ... t(2L-1)   <- warm-up: read, not scored
        ...
        tail:    row bs-1's state continues over t(bs*L) ... t(N-2)   (one call, one row)

    Each input at position p predicts position p + 1. ``warmup`` (w, capped at L) tokens
    before each row j > 0 are read in one call for rows 1..bs-1 and their predictions thrown
    away; ``warmup=0`` starts every row from zeros, as the learner's validation does. A model
    state of ``None`` must mean zeros (true of every looplm model).
    """
    if getattr(model, "layout", "every") != "every":
        raise LooplmError(f"{type(model).__name__} predicts one token per sample, not every position")
    model.eval()
    device = next(model.parameters()).device
    tokens = torch.as_tensor(tokens).reshape(-1).to(device, torch.int64)  # text streams are uint16/32
    batches = stream_batches(tokens, bs, sl, "every")
    L = batches.inputs.shape[1]
    row_start = torch.arange(bs, device=device) * L  # stream position of each row's first input
    state = None
    w = min(warmup, L)
    if w > 0 and bs > 1:
        context = tokens[row_start[1:, None] + torch.arange(-w, 0, device=device)]  # (bs-1, w)
        _, warm = model(context, None)
        state = cat_rows(map_state(warm, lambda t: torch.zeros_like(t[:, :1])), warm)
    steps = torch.arange(sl, device=device)
    for k in range(len(batches)):
        x, _ = batches.batch(k)
        logits, state = model(x, state)  # (bs, sl, V)
        yield row_start[:, None] + k * sl + steps + 1, logits
    tail = tokens[bs * L: -1]
    if len(tail):
        logits, _ = model(tail[None], map_state(state, lambda t: t[:, -1:]))
        yield torch.arange(bs * L + 1, len(tokens), device=device)[None], logits


@dataclass
class StreamScores:
    """Loss (nats/token) and accuracy over every position 1..N-1 of a stream, the layout used,
    and with ``keep_probs`` the model's distributions ``probs`` (N-1, V) float64, row i
    predicting token i+1 (what :func:`looplm.games.borborzan_scores` takes)."""

    loss: float
    accuracy: float
    n_predicted: int
    bs: int
    sl: int
    warmup: int
    probs: np.ndarray | None = None

    @property
    def perplexity(self) -> float:
        return perplexity(self.loss)

    @property
    def bits(self) -> float:
        """Bits per token: the loss in base 2."""
        return self.loss / math.log(2)


@torch.no_grad()
def score_stream(model: nn.Module, tokens: Tensor, bs: int, sl: int, warmup: int = WARMUP,
                 keep_probs: bool = False) -> StreamScores:
    """Score ``model`` on every position of ``tokens`` (see :func:`stream_logits`)."""
    tokens = torch.as_tensor(tokens).reshape(-1).to(torch.int64)
    bs, sl = fit_layout(len(tokens), bs, sl)
    device = next(model.parameters()).device
    targets = tokens.to(device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    probs = None
    for pos, logits in stream_logits(model, tokens, bs, sl, warmup):
        y = targets[pos]
        log_p = F.log_softmax(logits.double(), -1)  # (b, t, V)
        loss_sum -= log_p.gather(-1, y[..., None]).sum()
        correct += (top_token(logits) == y).sum()
        if keep_probs:
            if probs is None:
                probs = np.zeros((len(tokens) - 1, log_p.shape[-1]))
            probs[(pos - 1).reshape(-1).cpu().numpy()] = log_p.exp().reshape(-1, log_p.shape[-1]).cpu().numpy()
    n = len(tokens) - 1
    return StreamScores((loss_sum / n).item(), (correct / n).item(), n, bs, sl, warmup, probs)


def text_size(tok, tokens: Tensor, n_predicted: int | None = None) -> tuple[int, int]:
    """Characters and UTF-8 bytes of the text that tokens 1..n of a stream stand for (the tokens
    a model predicts; default all but the first): the decoded stream minus its first token,
    so a word tokenizer's space before each word counts with the word."""
    n = len(tokens) - 1 if n_predicted is None else n_predicted
    ids = torch.as_tensor(tokens).reshape(-1)[: n + 1].tolist()
    whole, first = tok.decode(ids), tok.decode(ids[:1])
    return len(whole) - len(first), len(whole.encode("utf-8")) - len(first.encode("utf-8"))


def scored_text_size(tok, targets: Tensor) -> tuple[int, int]:
    """Characters and UTF-8 bytes of the text of some scattered target tokens (a "last" layout's
    one target per sample): each token counted as it decodes after another token, so a word
    tokenizer's space before each word counts with the word, as in :func:`text_size`."""
    ids = torch.as_tensor(targets).reshape(-1).long()  # stored streams may be uint16/uint32
    counts = torch.bincount(ids, minlength=len(tok.vocab)).tolist()
    n_chars = n_bytes = 0
    anchor, anchor_text = 0, tok.decode([0])
    for token, count in enumerate(counts):
        if count:  # one decode per distinct token, not per target
            text = tok.decode([anchor, token])[len(anchor_text):]
            n_chars += count * len(text)
            n_bytes += count * len(text.encode("utf-8"))
    return n_chars, n_bytes


def per_text(loss: float, n_predicted: int, n_chars: int, n_bytes: int) -> dict[str, float]:
    """A mean loss (nats/token) over ``n_predicted`` tokens as nats per character and bits per
    byte of their text: the same total over the characters, and over the UTF-8 bytes in bits,
    which compares across tokenizers as language-modelling papers do."""
    total = loss * n_predicted
    return {"loss_per_char": total / max(n_chars, 1), "bits_per_byte": total / math.log(2) / max(n_bytes, 1)}
