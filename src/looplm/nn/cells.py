"""Recurrent cells, one time step each, written to be read (the chapter's teaching forms).

Each cell exists twice: a function of explicit weights (``rnn_cell``, ``gru_cell``,
``lstm_cell``), which the layers in :mod:`looplm.nn.layers` call step by step in their
reference path, and a module holding those weights under PyTorch's names
(``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``), a drop-in for ``torch.nn.RNNCell``,
``GRUCell`` and ``LSTMCell``.

PyTorch stacks the gates of one weight matrix in this order (rows of ``weight_ih``)::

    LSTM  [ input i | forget f | cell g | output o ]   each hidden_size rows
    GRU   [ reset r | update z | new n ]

The chapter's refactored cell splits ``i, f, o, g``; looplm keeps PyTorch's order so that a
``torch.nn.LSTM`` state_dict loads unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def rnn_cell(x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
             b_hh: Tensor | None = None, nonlinearity: str = "tanh") -> Tensor:
    """h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh). x: (bs, n_in), h: (bs, n_hid) -> (bs, n_hid)."""
    act = torch.tanh if nonlinearity == "tanh" else torch.relu
    return act(F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh))


def gru_cell(x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
             b_hh: Tensor | None = None) -> Tensor:
    """One GRU step (PyTorch's formulation). x: (bs, n_in), h: (bs, n_hid) -> (bs, n_hid).

    The reset gate scales the hidden part of the candidate *after* its product with
    W_hn (so ``b_hn`` sits inside ``r * (...)``): this is PyTorch's (and cuDNN's) variant.
    """
    x_r, x_z, x_n = F.linear(x, w_ih, b_ih).chunk(3, 1)
    h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, 1)
    reset = torch.sigmoid(x_r + h_r)        # how much of the past enters the candidate
    update = torch.sigmoid(x_z + h_z)       # how much of the past is kept as is
    new = torch.tanh(x_n + reset * h_n)     # the candidate hidden state
    return (1 - update) * new + update * h


def lstm_cell(x: Tensor, state: tuple[Tensor, Tensor], w_ih: Tensor, w_hh: Tensor,
              b_ih: Tensor | None = None, b_hh: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """One LSTM step, the chapter's fused form: one product for the four gates, split with chunk.

    x: (bs, n_in); state (h, c), each (bs, n_hid) -> (h', c'), each (bs, n_hid).
    """
    h, c = state
    gates = (F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)).chunk(4, 1)
    ingate, forgetgate, cellgate, outgate = gates
    ingate, forgetgate, outgate = map(torch.sigmoid, (ingate, forgetgate, outgate))
    cellgate = cellgate.tanh()
    c = (forgetgate * c) + (ingate * cellgate)
    h = outgate * c.tanh()
    return h, c


class _CellBase(nn.Module):
    """Weights under PyTorch's names, initialised as PyTorch does: U(-1/sqrt(n_hid), 1/sqrt(n_hid))."""

    n_gates = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        kw = {"device": device, "dtype": dtype}
        rows = self.n_gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden_size, **kw))
        self.bias_ih = nn.Parameter(torch.empty(rows, **kw)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(rows, **kw)) if bias else None
        bound = 1 / math.sqrt(hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _weights(self) -> tuple:
        return self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh

    def _zeros(self, x: Tensor) -> Tensor:
        return x.new_zeros(x.shape[0], self.hidden_size)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class RNNCell(_CellBase):
    """Elman cell, drop-in for ``torch.nn.RNNCell``: ``forward(input, hx=None) -> h'``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"unknown nonlinearity {nonlinearity!r}: use 'tanh' or 'relu'")
        super().__init__(input_size, hidden_size, bias, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        hx = self._zeros(input) if hx is None else hx
        return rnn_cell(input, hx, *self._weights(), nonlinearity=self.nonlinearity)


class GRUCell(_CellBase):
    """Drop-in for ``torch.nn.GRUCell``: ``forward(input, hx=None) -> h'``."""

    n_gates = 3

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        hx = self._zeros(input) if hx is None else hx
        return gru_cell(input, hx, *self._weights())


class LSTMCell(_CellBase):
    """The fused cell the LSTM layer uses; drop-in for ``torch.nn.LSTMCell``.

    ``forward(input, hx=None) -> (h', c')``, input (bs, n_in), each state (bs, n_hid).
    """

    n_gates = 4

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        hx = (self._zeros(input), self._zeros(input)) if hx is None else hx
        return lstm_cell(input, hx, *self._weights())


class LSTMCellFourGates(nn.Module):
    """The chapter's first LSTM cell: four gate layers, each reading ``cat([h, input])``.

    It computes what :class:`LSTMCell` computes, with four small products instead of one
    big one; ``from_fused``/``to_fused`` move the weights between the two forms::

        fused weight_ih (4*nh, ni), weight_hh (4*nh, nh)  rows [i | f | g | o]
        gate layer k:   weight (nh, nh + ni) = [weight_hh rows k | weight_ih rows k]
                        bias   (nh,)         = bias_ih rows k + bias_hh rows k
    """

    def __init__(self, ni: int, nh: int):
        super().__init__()
        self.ni, self.nh = ni, nh
        self.forget_gate = nn.Linear(ni + nh, nh)
        self.input_gate = nn.Linear(ni + nh, nh)
        self.cell_gate = nn.Linear(ni + nh, nh)
        self.output_gate = nn.Linear(ni + nh, nh)

    def forward(self, input: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """input (bs, ni), state (h, c) each (bs, nh) -> (h', c')."""
        h, c = state
        h = torch.cat([h, input], dim=1)
        forget = torch.sigmoid(self.forget_gate(h))
        c = c * forget
        inp = torch.sigmoid(self.input_gate(h))
        cell = torch.tanh(self.cell_gate(h))
        c = c + inp * cell
        out = torch.sigmoid(self.output_gate(h))
        h = out * torch.tanh(c)
        return h, c

    def _gates_in_fused_order(self) -> tuple[nn.Linear, ...]:
        return self.input_gate, self.forget_gate, self.cell_gate, self.output_gate

    @classmethod
    def from_fused(cls, cell: LSTMCell) -> "LSTMCellFourGates":
        """The four-gate cell computing exactly what ``cell`` computes."""
        four = cls(cell.input_size, cell.hidden_size).to(cell.weight_ih)
        bias = (cell.bias_ih + cell.bias_hh if cell.bias
                else cell.weight_ih.new_zeros(cell.weight_ih.shape[0]))
        with torch.no_grad():
            rows = zip(cell.weight_hh.chunk(4), cell.weight_ih.chunk(4), bias.chunk(4))
            for gate, (w_hh, w_ih, b) in zip(four._gates_in_fused_order(), rows):
                gate.weight.copy_(torch.cat([w_hh, w_ih], dim=1))
                gate.bias.copy_(b)
        return four

    def to_fused(self) -> LSTMCell:
        """The fused cell computing exactly what this one computes (its bias all in ``bias_ih``)."""
        gates = self._gates_in_fused_order()
        fused = LSTMCell(self.ni, self.nh).to(gates[0].weight)
        with torch.no_grad():
            fused.weight_hh.copy_(torch.cat([g.weight[:, :self.nh] for g in gates]))
            fused.weight_ih.copy_(torch.cat([g.weight[:, self.nh:] for g in gates]))
            fused.bias_ih.copy_(torch.cat([g.bias for g in gates]))
            fused.bias_hh.zero_()
        return fused
