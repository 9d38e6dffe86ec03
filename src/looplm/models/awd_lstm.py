"""The AWD-LSTM language model (Merity, Keskar & Socher, 2017; fastai's defaults).

::

    x (bs, T) token ids
      ─► encoder: Embedding(vocab_sz, emb_sz), EmbeddingDropout embed_p   (bs, T, emb_sz)
      ─► RNNDropout input_p
      ─► LSTM 0: emb_sz -> n_hid, WeightDropout weight_p on weight_hh     (bs, T, n_hid)
      ─► RNNDropout hidden_p ─► LSTM 1: n_hid -> n_hid ─► ... ─► RNNDropout hidden_p
      ─► LSTM n_layers-1: n_hid -> emb_sz                                 (bs, T, emb_sz) = raw
      ─► RNNDropout output_p                                              (bs, T, emb_sz) = dropped
      ─► decoder: Linear(emb_sz, vocab_sz), weight tied to the encoder's   (bs, T, vocab_sz)

The last layer outputs ``emb_sz`` so the decoder can share the embedding matrix while
``n_hid`` is free. AR and TAR are not computed here: ``forward(..., return_activations=True)``
hands ``raw`` and ``dropped`` to the trainer's callback (AR on dropped, TAR on raw).

The state is a flat tuple ``(h_0, c_0, h_1, c_1, ...)``, each (1, bs, size of layer l), so
``looplm.state`` detaches and refits it; the model never detaches it (the trainer runs TBPTT).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from looplm.errors import LooplmError
from looplm.nn import LSTM, EmbeddingDropout, RNNDropout, WeightDropout
from looplm.nn.dropout import check_p
from looplm.state import fit_state

DROPOUTS = ("output_p", "hidden_p", "input_p", "embed_p", "weight_p")
# how the (tied) embedding starts: fastai's U(-0.1, 0.1), made for vocabularies of tens of
# thousands, or PyTorch's nn.Embedding default N(0, 1), far better for a small vocabulary
EMB_INITS = ("fastai", "torch")


@dataclass
class AWDLSTMConfig:
    """Sizes and dropouts of an AWD-LSTM; every ``*_p`` is multiplied by ``drop_mult``.

    The defaults are fastai's (the ``fastai`` preset); ``pad_token`` is the embedding's
    padding_idx (None: no padding row).
    """

    vocab_sz: int
    emb_sz: int = 400
    n_hid: int = 1152
    n_layers: int = 3
    pad_token: int | None = None
    tie_weights: bool = True
    output_p: float = 0.1
    hidden_p: float = 0.15
    input_p: float = 0.25
    embed_p: float = 0.02
    weight_p: float = 0.2
    drop_mult: float = 1.0
    emb_init: str = "fastai"

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise a LooplmError naming the first impossible setting."""
        for name in ("vocab_sz", "emb_sz", "n_hid", "n_layers"):
            if getattr(self, name) < 1:
                raise LooplmError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.pad_token is not None and not 0 <= self.pad_token < self.vocab_sz:
            raise LooplmError(f"pad_token must be a token id below vocab_sz={self.vocab_sz}, "
                              f"got {self.pad_token}")
        if self.emb_init not in EMB_INITS:
            raise LooplmError(f"emb_init must be one of {', '.join(EMB_INITS)}, got {self.emb_init!r}")
        if self.drop_mult < 0:
            raise LooplmError(f"drop_mult must be at least 0, got {self.drop_mult}")
        for name in DROPOUTS:
            check_p(name, getattr(self, name))
            check_p(f"{name} * drop_mult", self.p(name))

    def p(self, name: str) -> float:
        """The dropout probability actually used: ``<name> * drop_mult``."""
        return getattr(self, name) * self.drop_mult


AWD_LSTM_PRESETS: dict[str, dict] = {
    "fastai": dict(emb_sz=400, n_hid=1152, n_layers=3, output_p=0.1, hidden_p=0.15,
                   input_p=0.25, embed_p=0.02, weight_p=0.2),
    # Merity et al.'s PTB settings: dropout, dropouth, dropouti, dropoute, wdrop
    "paper": dict(emb_sz=400, n_hid=1150, n_layers=3, output_p=0.4, hidden_p=0.3,
                  input_p=0.65, embed_p=0.1, weight_p=0.5),
}


class AWDLSTM(nn.Module):
    """The AWD-LSTM language model; ``forward(x, state) -> (logits, state)``."""

    layout = "every"   # a prediction at every step

    def __init__(self, config: AWDLSTMConfig):
        super().__init__()
        self.config = c = config
        self.sizes = [c.emb_sz] + [c.n_hid] * (c.n_layers - 1) + [c.emb_sz]   # in/out of layers
        emb = nn.Embedding(c.vocab_sz, c.emb_sz, padding_idx=c.pad_token)
        self.encoder = EmbeddingDropout(emb, c.p("embed_p"))
        self.rnns = nn.ModuleList(
            WeightDropout(LSTM(n_in, n_out, batch_first=True), c.p("weight_p"))
            for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]))
        self.input_dp = RNNDropout(c.p("input_p"))
        self.hidden_dps = nn.ModuleList(RNNDropout(c.p("hidden_p")) for _ in range(c.n_layers - 1))
        self.output_dp = RNNDropout(c.p("output_p"))
        self.decoder = nn.Linear(c.emb_sz, c.vocab_sz)
        self.reset_parameters()
        if c.tie_weights:
            self.decoder.weight = self.encoder.emb.weight

    def reset_parameters(self) -> None:
        """Embedding U(-0.1, 0.1) as fastai does (``emb_init="fastai"``) or N(0, 1) as
        ``nn.Embedding`` does (``"torch"``); untied decoder U(-0.1, 0.1); decoder bias 0."""
        emb = self.encoder.emb
        if self.config.emb_init == "fastai":
            nn.init.uniform_(emb.weight, -0.1, 0.1)
        else:
            nn.init.normal_(emb.weight)
        if emb.padding_idx is not None:
            with torch.no_grad():
                emb.weight[emb.padding_idx].zero_()
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def zero_state(self, bs: int) -> tuple[Tensor, ...]:
        """(h_0, c_0, h_1, c_1, ...) of zeros, each (1, bs, output size of layer l)."""
        w = self.encoder.emb.weight
        return tuple(w.new_zeros(1, bs, n) for n in self.sizes[1:] for _ in range(2))

    def forward(self, x: Tensor, state: tuple[Tensor, ...] | None = None, *,
                return_activations: bool = False):
        """x (bs, T) -> logits (bs, T, vocab_sz), new state; with ``return_activations``
        also (raw, dropped), each (bs, T, emb_sz): the last LSTM's output before and after
        output dropout."""
        bs = x.shape[0]
        state = fit_state(state, bs)
        state = self.zero_state(bs) if state is None else state
        out = self.input_dp(self.encoder(x))                              # (bs, T, emb_sz)
        new_state = []
        for layer, rnn in enumerate(self.rnns):
            out, (h, c) = rnn(out, state[2 * layer:2 * layer + 2])       # (bs, T, sizes[l+1])
            new_state += [h, c]
            if layer < len(self.hidden_dps):
                out = self.hidden_dps[layer](out)
        raw = out                                                        # (bs, T, emb_sz)
        dropped = self.output_dp(raw)
        logits = self.decoder(dropped)                                   # (bs, T, vocab_sz)
        if return_activations:
            return logits, tuple(new_state), (raw, dropped)
        return logits, tuple(new_state)
