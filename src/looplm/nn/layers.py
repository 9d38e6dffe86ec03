"""Multi-layer RNN, GRU and LSTM from scratch: drop-ins for their ``torch.nn`` namesakes.

Same constructor arguments, the same parameters under the same names (``weight_ih_l0``,
``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``, ``..._l1``), the same forward::

    input (T, bs, n_in)            (bs, T, n_in) if batch_first; (T, n_in) unbatched
      │
      ├─ layer 0: x W_ih^T + b for all T steps at once, then the loop over time ─► (T, bs, n_hid)
      │     dropout between layers (training only, never after the last one)
      ├─ layer 1 ... layer num_layers-1
      ▼
    output (T, bs, n_hid)          the last layer's h at every step
    h_n    (num_layers, bs, n_hid) each layer's h after the last step (LSTM: (h_n, c_n))

Two paths give the same numbers: ``fast=True`` (default) runs :mod:`looplm.nn.fast`, the
loop with a hand-written backward; ``fast=False`` runs the readable cells of
:mod:`looplm.nn.cells` one step at a time and lets autograd record everything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from looplm.nn.cells import gru_cell, lstm_cell, rnn_cell
from looplm.nn.dropout import dropout_mask
from looplm.nn.fast import gru_recurrence, lstm_recurrence, rnn_recurrence

LayerState = tuple[Tensor, ...]      # one layer's state: (h,) or (h, c), each (bs, n_hid)


def _bias_sum(b_ih: Tensor | None, b_hh: Tensor | None) -> Tensor | None:
    return None if b_ih is None else b_ih + b_hh


def _projection(x: Tensor, w_ih: Tensor, b: Tensor | None) -> Tensor:
    """x W_ih^T + b for all steps: (T, bs, n_in) -> (T, bs, G*n_hid), in x's memory order.

    A batch_first input arrives as a transposed view of (bs, T, n_in); a linear on the view
    copies it first, and its gradient needs another copy. Projecting (bs, T, n_in) directly
    and viewing the result as (T, bs, ...) avoids both; the C++ LSTM keeps that order."""
    if x.dim() == 3 and not x.is_contiguous() and x.transpose(0, 1).is_contiguous():
        return F.linear(x.transpose(0, 1), w_ih, b).transpose(0, 1)
    return F.linear(x, w_ih, b)


class _Recurrent(nn.Module):
    """What RNN, GRU and LSTM share; a subclass sets ``n_gates``, ``n_states`` and ``_layer``."""

    n_gates = 1      # blocks of n_hid rows in each weight matrix
    n_states = 1     # tensors in the state: h, or h and c

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, *, fast: bool = True,
                 device=None, dtype=None):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        if not 0 <= dropout <= 1:
            raise ValueError(f"dropout must be in [0, 1], got {dropout}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout, self.fast = bias, batch_first, dropout, fast
        kw = {"device": device, "dtype": dtype}
        rows = self.n_gates * hidden_size
        for k in range(num_layers):
            n_in = input_size if k == 0 else hidden_size
            shapes = {f"weight_ih_l{k}": (rows, n_in), f"weight_hh_l{k}": (rows, hidden_size)}
            if bias:
                shapes.update({f"bias_ih_l{k}": (rows,), f"bias_hh_l{k}": (rows,)})
            for name, shape in shapes.items():
                self.register_parameter(name, nn.Parameter(torch.empty(shape, **kw)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's initialisation: every parameter U(-1/sqrt(n_hid), 1/sqrt(n_hid))."""
        bound = 1 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, input: Tensor, hx=None, *, weights: Mapping[str, Tensor] | None = None):
        """Run all layers over the whole sequence; returns ``(output, h_n)`` as torch.nn does.

        ``weights`` maps parameter names to tensors used in their place for this call only
        (weight dropout passes a dropped ``weight_hh_l0``); the parameters themselves stay.
        """
        weights = dict(weights or {})
        unknown = set(weights) - set(self._parameters)
        if unknown:
            raise ValueError(f"no parameter named {sorted(unknown)} in {type(self).__name__}")
        batched = input.dim() == 3
        x = input if batched else input.unsqueeze(1)                     # (T, bs, n_in)
        if batched and self.batch_first:
            x = x.transpose(0, 1)
        state = self._initial_state(x, hx, batched)     # n_states x (num_layers, bs, n_hid)
        finals = []
        for k in range(self.num_layers):
            if k and self.dropout:
                x = x * dropout_mask(x, tuple(x.shape), self.dropout) if self.training else x
            names = (f"weight_ih_l{k}", f"weight_hh_l{k}", f"bias_ih_l{k}", f"bias_hh_l{k}")
            w = [weights.get(n, getattr(self, n, None)) for n in names]
            layer = self._layer if self.fast else self._reference_layer
            x, final = layer(x, tuple(s[k] for s in state), *w)      # x: (T, bs, n_hid)
            finals.append(final)
        state_n = tuple(torch.stack(s) for s in zip(*finals))
        output = x.transpose(0, 1) if batched and self.batch_first else x
        if not batched:
            output, state_n = output.squeeze(1), tuple(s.squeeze(1) for s in state_n)
        return output, (state_n if self.n_states > 1 else state_n[0])

    def _initial_state(self, x: Tensor, hx, batched: bool) -> tuple[Tensor, ...]:
        shape = (self.num_layers, x.shape[1], self.hidden_size)
        if hx is None:
            return (x.new_zeros(shape),) * self.n_states
        hx = tuple(hx) if self.n_states > 1 else (hx,)
        if not batched:
            hx = tuple(h.unsqueeze(1) for h in hx)
        for h in hx:
            if h.shape != shape:
                raise RuntimeError(f"Expected hidden size {tuple(shape)}, got {tuple(h.shape)}")
        return hx

    def _reference_layer(self, x: Tensor, state: LayerState, *w: Tensor | None):
        """The readable loop: one cell step per token, recorded by autograd."""
        outs = []
        for x_t in x:
            state = self._cell(x_t, state, *w)
            outs.append(state[0])
        return torch.stack(outs), state

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        return s + ("" if self.fast else ", fast=False")


class RNN(_Recurrent):
    """Elman RNN (tanh or relu), drop-in for ``torch.nn.RNN``.

    ``forward(input, hx) -> (output, h_n)``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, *, fast: bool = True, device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"unknown nonlinearity {nonlinearity!r}: use 'tanh' or 'relu'")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         fast=fast, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity

    def _cell(self, x_t, state, w_ih, w_hh, b_ih, b_hh) -> LayerState:
        return (rnn_cell(x_t, state[0], w_ih, w_hh, b_ih, b_hh, self.nonlinearity),)

    def _layer(self, x, state, w_ih, w_hh, b_ih, b_hh):
        out = rnn_recurrence(F.linear(x, w_ih, _bias_sum(b_ih, b_hh)), state[0], w_hh,
                             self.nonlinearity)
        return out, (out[-1],)

    def extra_repr(self) -> str:
        return super().extra_repr() + (", nonlinearity='relu'" if self.nonlinearity == "relu" else "")


class GRU(_Recurrent):
    """Drop-in for ``torch.nn.GRU``. ``forward(input, hx) -> (output, h_n)``."""

    n_gates = 3

    def _cell(self, x_t, state, w_ih, w_hh, b_ih, b_hh) -> LayerState:
        return (gru_cell(x_t, state[0], w_ih, w_hh, b_ih, b_hh),)

    def _layer(self, x, state, w_ih, w_hh, b_ih, b_hh):
        out = gru_recurrence(F.linear(x, w_ih, b_ih), state[0], w_hh, b_hh)
        return out, (out[-1],)


class LSTM(_Recurrent):
    """Drop-in for ``torch.nn.LSTM``. ``forward(input, (h0, c0)) -> (output, (h_n, c_n))``."""

    n_gates = 4
    n_states = 2

    def _cell(self, x_t, state, w_ih, w_hh, b_ih, b_hh) -> LayerState:
        return lstm_cell(x_t, state, w_ih, w_hh, b_ih, b_hh)

    def _layer(self, x, state, w_ih, w_hh, b_ih, b_hh):
        out, c_n = lstm_recurrence(_projection(x, w_ih, _bias_sum(b_ih, b_hh)), *state, w_hh)
        return out, (out[-1], c_n)
