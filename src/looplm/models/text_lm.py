"""Plain LSTM and GRU language models (``lstm``, ``gru``): char-rnn for any corpus.

    x (bs, T) ─► embedding ─► dropout p ─► LSTM/GRU, n_layers (dropout p between layers)
      (bs, T, emb_sz)                      (bs, T, n_hidden)
      ─► dropout p ─► [proj n_hidden -> emb_sz, when tied and the sizes differ] ─► decoder
                                                                    logits (bs, T, vocab_sz)

With ``tie_weights`` the decoder's weight is the embedding matrix (vocab_sz, emb_sz).
The state is torch.nn's: ``h`` (n_layers, bs, n_hidden) for a GRU, ``(h, c)`` for an LSTM;
``None`` means zeros and a state of another batch size is replaced by zeros. The model
never detaches its state: the learner does, at the chunk boundary. ``scratch=True`` runs
:mod:`looplm.nn`'s from-scratch layers (same parameters) instead of torch.nn's kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from looplm import nn as looplm_nn
from looplm.errors import LooplmError
from looplm.nn import Dropout, stacked
from looplm.state import State, fit_state


@dataclass
class TextLMConfig:
    """vocab_sz: tokens; emb_sz: embedding size; n_hidden: units per layer; n_layers: stacked
    layers; p: dropout on the embedding, between layers and before the decoder; tie_weights:
    decoder weight = embedding; scratch: looplm.nn layers instead of torch.nn's."""

    vocab_sz: int
    emb_sz: int = 64
    n_hidden: int = 512
    n_layers: int = 2
    p: float = 0.2
    tie_weights: bool = False
    scratch: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if min(self.vocab_sz, self.emb_sz, self.n_hidden, self.n_layers) < 1:
            raise LooplmError(f"vocab_sz, emb_sz, n_hidden and n_layers must be at least 1, got "
                              f"{self.vocab_sz}, {self.emb_sz}, {self.n_hidden}, {self.n_layers}")
        if not 0.0 <= self.p < 1.0:
            raise LooplmError(f"the dropout p must be in [0, 1), got {self.p}")


class _TextRNN(nn.Module):
    """What the LSTM and GRU models share; a subclass names its ``kind``."""

    layout = "every"
    kind = ""

    def __init__(self, config: TextLMConfig):
        super().__init__()
        self.config = config
        # looplm.nn.stacked's are torch's modules with a faster mask between layers
        layers = looplm_nn if config.scratch else stacked
        rnn_cls = {"lstm": layers.LSTM, "gru": layers.GRU}[self.kind]
        self.encoder = nn.Embedding(config.vocab_sz, config.emb_sz)
        self.drop = Dropout(config.p)
        self.rnn = rnn_cls(config.emb_sz, config.n_hidden, config.n_layers, batch_first=True,
                           dropout=config.p if config.n_layers > 1 else 0.0)
        out_sz = config.emb_sz if config.tie_weights else config.n_hidden
        self.proj = nn.Linear(config.n_hidden, out_sz, bias=False) if out_sz != config.n_hidden else None
        self.decoder = nn.Linear(out_sz, config.vocab_sz)
        # small uniform weights, as pytorch/examples' word_language_model: a tied decoder starts
        # with logits near zero instead of N(0, 1) ones
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        if config.tie_weights:
            self.decoder.weight = self.encoder.weight
        else:
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, x: Tensor, state: State = None, *, return_activations: bool = False):
        """x (bs, T) ids -> logits (bs, T, vocab_sz) and the new state; with
        ``return_activations`` also ``(raw, dropped)``, the top layer's output before and
        after dropout, each (bs, T, n_hidden) (for AR/TAR)."""
        raw, state = self.rnn(self.drop(self.encoder(x)), fit_state(state, x.shape[0]))
        dropped = self.drop(raw)
        out = dropped if self.proj is None else self.proj(dropped)
        logits = self.decoder(out)
        return (logits, state, (raw, dropped)) if return_activations else (logits, state)


class LSTMLM(_TextRNN):
    """Stacked LSTM language model; state ``(h, c)``, each (n_layers, bs, n_hidden)."""

    kind = "lstm"


class GRULM(_TextRNN):
    """Stacked GRU language model; state ``h`` (n_layers, bs, n_hidden)."""

    kind = "gru"
