"""LMModel5, LModel6, LModel7: the chapter's stacked RNN and LSTM models, with explicit state.

    x (bs, sl) -> i_h -> (bs, sl, n_hidden) -> rnn (n_layers) -> (bs, sl, n_hidden) -> h_o -> (bs, sl, vocab)

The state is what ``torch.nn.RNN`` / ``GRU`` / ``LSTM`` take: ``h`` of shape
(n_layers, bs, n_hidden), or the pair ``(h, c)``. ``None`` means zeros, and a
state made for another batch size is replaced by zeros, so a model trained at
bs=64 evaluates at any bs (the chapter's models, which allocate ``self.h`` for
one bs, crash there).

The chapter's exercise "compare with PyTorch's GRU" is answered by LModel6 with
its LSTM swapped: ``LModel6GRU`` (``torch.nn.GRU``), ``LModel6ScratchGRU`` and
``LModel6ScratchLSTM`` (:mod:`looplm.nn`'s from-scratch layers). The from-scratch
layers register the same parameters in the same order and initialise them as
PyTorch does, so under one seed a scratch model starts from the same weights as
its built-in twin.
"""

from __future__ import annotations

from torch import Tensor, nn

from looplm.models.config import ChapterDropoutConfig, ChapterStackedConfig
from looplm.nn import GRU as ScratchGRU
from looplm.nn import LSTM as ScratchLSTM
from looplm.nn.dropout import ChapterDropout, Dropout
from looplm.state import State, fit_state


class LMModel5(nn.Module):
    """Stacked ``nn.RNN`` (tanh). forward(x, state) -> (logits (bs, sl, vocab), h)."""

    layout = "every"

    def __init__(self, config: ChapterStackedConfig):
        super().__init__()
        self.config = config
        self.i_h = nn.Embedding(config.vocab_sz, config.n_hidden)
        self.rnn = nn.RNN(config.n_hidden, config.n_hidden, config.n_layers, batch_first=True)
        self.h_o = nn.Linear(config.n_hidden, config.vocab_sz)

    def forward(self, x: Tensor, state: State = None) -> tuple[Tensor, Tensor]:
        res, h = self.rnn(self.i_h(x), fit_state(state, x.shape[0]))
        return self.h_o(res), h


class LModel6(nn.Module):
    """Stacked ``nn.LSTM``. forward(x, state) -> (logits (bs, sl, vocab), (h, c)).

    A subclass changes the recurrent layer by overriding ``make_rnn``.
    """

    layout = "every"

    def __init__(self, config: ChapterStackedConfig):
        super().__init__()
        self.config = config
        self.i_h = nn.Embedding(config.vocab_sz, config.n_hidden)
        self.rnn = self.make_rnn(config)
        self.h_o = nn.Linear(config.n_hidden, config.vocab_sz)

    @staticmethod
    def make_rnn(config: ChapterStackedConfig) -> nn.Module:
        return nn.LSTM(config.n_hidden, config.n_hidden, config.n_layers, batch_first=True)

    def forward(self, x: Tensor, state: State = None) -> tuple[Tensor, State]:
        res, h = self.rnn(self.i_h(x), fit_state(state, x.shape[0]))
        return self.h_o(res), h


class LModel6GRU(LModel6):
    """LModel6 with ``torch.nn.GRU``. forward(x, state) -> (logits, h (n_layers, bs, n_hidden))."""

    @staticmethod
    def make_rnn(config: ChapterStackedConfig) -> nn.Module:
        return nn.GRU(config.n_hidden, config.n_hidden, config.n_layers, batch_first=True)


class LModel6ScratchGRU(LModel6):
    """LModel6 with the from-scratch ``looplm.nn.GRU``; ``fast=False`` runs its readable loop."""

    @staticmethod
    def make_rnn(config: ChapterStackedConfig) -> nn.Module:
        return ScratchGRU(config.n_hidden, config.n_hidden, config.n_layers, batch_first=True, fast=config.fast)


class LModel6ScratchLSTM(LModel6):
    """LModel6 with the from-scratch ``looplm.nn.LSTM``; ``fast=False`` runs its readable loop."""

    @staticmethod
    def make_rnn(config: ChapterStackedConfig) -> nn.Module:
        return ScratchLSTM(config.n_hidden, config.n_hidden, config.n_layers, batch_first=True, fast=config.fast)


class LModel7(nn.Module):
    """LModel6 with dropout before the output layer and the output tied to the embedding.

    forward(x, state) -> (logits (bs, sl, vocab), (h, c)); with
    ``return_activations=True`` also ``(raw, dropped)``, the LSTM output before
    and after dropout, each (bs, sl, n_hidden), for AR (on ``dropped``) and TAR
    (on ``raw``).
    """

    layout = "every"

    def __init__(self, config: ChapterDropoutConfig):
        super().__init__()
        self.config = config
        self.i_h = nn.Embedding(config.vocab_sz, config.n_hidden)
        self.rnn = nn.LSTM(config.n_hidden, config.n_hidden, config.n_layers, batch_first=True)
        self.drop = ChapterDropout(config.p) if config.dropout == "scratch" else Dropout(config.p)
        self.h_o = nn.Linear(config.n_hidden, config.vocab_sz)
        self.h_o.weight = self.i_h.weight  # weight tying: one matrix maps tokens in and out

    def forward(self, x: Tensor, state: State = None, *, return_activations: bool = False):
        raw, h = self.rnn(self.i_h(x), fit_state(state, x.shape[0]))
        dropped = self.drop(raw)
        logits = self.h_o(dropped)
        return (logits, h, (raw, dropped)) if return_activations else (logits, h)
