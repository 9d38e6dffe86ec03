"""Text generation in O(n): prime the recurrent state once, then one token per step.

    prompt ids (1, P) ─► model ─► logits[:, -1] and state          (one call for the prompt)
    repeat n times:
        logits / temperature ─► keep top-k ─► keep top-p ─► sample id
        id (1, 1) + state ─► model ─► logits, state              (one step: O(1) per token)

Nothing is re-encoded or re-read: each step feeds the model the one token it just drew
and the state it returned. ``temperature`` divides the logits (0 means always the most
likely token); ``top_k`` keeps the k likeliest tokens; ``top_p`` keeps the fewest tokens
whose probability adds up to at least p. A seed makes the draw repeat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from looplm.data.tokenize import Tokenizer, WordTokenizer
from looplm.data.vocab import Vocab
from looplm.errors import LooplmError


@dataclass
class SampleConfig:
    """How each next token is drawn (see the module docstring)."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None

    def validate(self) -> None:
        if not self.temperature >= 0:
            raise LooplmError(f"--temperature must be 0 (greedy) or positive, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise LooplmError(f"--top-k must be at least 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise LooplmError(f"--top-p must be in (0, 1], got {self.top_p}")


def next_token_probs(logits: Tensor, cfg: SampleConfig) -> Tensor:
    """logits (bs, V) -> probabilities (bs, V) after temperature, top-k and top-p."""
    logits = logits.double()
    if cfg.temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).double()
    logits = logits / cfg.temperature
    if cfg.top_k is not None and cfg.top_k < logits.shape[-1]:
        kth = logits.topk(cfg.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(-1)
    if cfg.top_p is not None and cfg.top_p < 1:
        sorted_p, order = probs.sort(-1, descending=True)
        before = sorted_p.cumsum(-1) - sorted_p  # mass of the likelier tokens
        keep = torch.zeros_like(probs, dtype=torch.bool).scatter(-1, order, before < cfg.top_p)
        probs = probs * keep
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


@torch.no_grad()
def sample_ids(model: nn.Module, prompt_ids: Tensor, n: int, cfg: SampleConfig | None = None,
               never: Sequence[int] = ()) -> Tensor:
    """Draw ``n`` ids after ``prompt_ids`` (P,) int64, P >= 1, never one of ``never``;
    returns (n,) int64."""
    cfg = cfg or SampleConfig()
    cfg.validate()
    if len(prompt_ids) < 1:
        raise LooplmError("the prompt holds no token: give at least one")
    if getattr(model, "layout", "every") != "every":
        raise LooplmError(f"{type(model).__name__} reads fixed samples, not a stream: "
                          "generate with a model that predicts every token (lm4-lm7, lstm, gru)")
    was_training, mkldnn = model.training, torch.backends.mkldnn.enabled
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator(device=device)
    if cfg.seed is None:
        gen.seed()  # a fresh draw every time, leaving torch's global generator alone
    else:
        gen.manual_seed(cfg.seed)
    try:
        logits, state = model(prompt_ids.to(device).view(1, -1), None)  # (1, P, V)
        if state is None and n > 1:
            raise LooplmError(f"{type(model).__name__} keeps no state between calls, so it cannot "
                              "continue one token at a time: use a stateful model")
        # oneDNN's RNN kernels (faster for training) set up per call, which dominates a step
        # of one token: PyTorch's own kernels are about 6x faster here (2x512 LSTM on a CPU)
        torch.backends.mkldnn.enabled = False
        out = torch.empty(n, dtype=torch.int64, device=device)
        banned = torch.tensor(list(never), dtype=torch.int64, device=device)
        for i in range(n):
            probs = next_token_probs(logits[:, -1].index_fill(-1, banned, float("-inf")), cfg)  # (1, V)
            out[i] = torch.multinomial(probs, 1, generator=gen)[0, 0]
            if i + 1 < n:
                logits, state = model(out[i].view(1, 1), state)  # (1, 1, V)
    finally:
        model.train(was_training)
        torch.backends.mkldnn.enabled = mkldnn
    return out.cpu()


def generate(model: nn.Module, tokenizer: Tokenizer | Vocab, prompt: str, n: int = 200,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             seed: int | None = None) -> str:
    """The text of ``n`` tokens drawn after ``prompt`` (the continuation only).

    ``tokenizer`` is the run's (:func:`looplm.data.tokenize.load_tokenizer`); a bare
    :class:`Vocab` is read as whitespace-separated words. Characters or words the vocab
    lacks are an error, not ``<unk>``.
    """
    tok = WordTokenizer(tokenizer) if isinstance(tokenizer, Vocab) else tokenizer
    if n < 0:
        raise LooplmError(f"--n must not be negative, got {n}")
    vocab_sz = getattr(getattr(model, "config", None), "vocab_sz", len(tok.vocab))
    if vocab_sz != len(tok.vocab):
        raise LooplmError(f"the model was trained with a vocab of {vocab_sz} tokens but the tokenizer has "
                          f"{len(tok.vocab)}: use the tokenizer saved with the model's run")
    ids = torch.from_numpy(tok.encode(prompt, strict=True))
    if n == 0:
        return ""
    never = [tok.vocab.stoi[tok.vocab.unk]] if tok.vocab.unk is not None else []  # "<unk>" is no text
    cont = sample_ids(model, ids, n, SampleConfig(temperature, top_k, top_p, seed), never)
    return tok.decode(cont.tolist())
