"""torch.nn.LSTM and torch.nn.GRU with the fast dropout mask between their layers.

A stacked ``nn.LSTM(..., num_layers=n, dropout=p)`` drops its activations between layers
with ``bernoulli_``, which CPUs draw one value at a time: on the 2x512 char LSTM (bs 32, sl 128)
that mask took about 8% of a bf16 training step. These subclasses keep the parameters, their
names and every other behaviour of torch's modules (a state_dict loads into either), and in
training on CPU run the layers one call each, with :class:`looplm.nn.Dropout`'s mask between::

    x ─► torch.lstm(layer 0) ─► x * mask ─► torch.lstm(layer 1) ─► ... ─► output
                                (bs, T, n_hid): 0 or 1/(1-p)

oneDNN runs a stacked layer one layer at a time anyway, so the split costs nothing. Outside
training, without dropout, with one layer, or on CUDA (where ``bernoulli_`` is fast and cuDNN
wants the weights in one flat buffer) they are torch's modules as they are.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from looplm.nn.dropout import dropout_mask


class _LayerByLayer:
    """What the two share; ``_run(x, hx_of_layer, weights)`` calls one torch layer."""

    n_states = 1

    def _layer_by_layer(self, input: Tensor, hx) -> bool:
        return (self.training and self.dropout > 0 and self.num_layers > 1 and input.dim() == 3
                and input.device.type == "cpu" and not self.bidirectional
                and getattr(self, "proj_size", 0) == 0)

    def forward(self, input, hx=None):
        """(output, h_n) as torch's module returns them (LSTM: (output, (h_n, c_n)))."""
        if not isinstance(input, Tensor) or not self._layer_by_layer(input, hx):
            return super().forward(input, hx)
        if hx is not None:
            self.check_forward_args(input, hx, None)
        bs = input.shape[0 if self.batch_first else 1]
        if hx is None:
            zeros = input.new_zeros(self.num_layers, bs, self.hidden_size)
            hx = (zeros,) * self.n_states
        elif self.n_states == 1:
            hx = (hx,)
        per_layer = len(self._flat_weights) // self.num_layers
        x, finals = input, []
        for k in range(self.num_layers):
            if k:
                x = x * dropout_mask(x, tuple(x.shape), self.dropout)
            weights = self._flat_weights[k * per_layer:(k + 1) * per_layer]
            x, *state = self._run(x, tuple(h[k:k + 1] for h in hx), weights)
            finals.append(state)
        state_n = tuple(torch.cat(s) for s in zip(*finals))   # each (num_layers, bs, n_hid)
        return x, (state_n if self.n_states > 1 else state_n[0])


class LSTM(_LayerByLayer, nn.LSTM):
    """``torch.nn.LSTM`` whose between-layer dropout draws the fast mask (CPU training)."""

    n_states = 2

    def _run(self, x, hx, weights):
        return torch.lstm(x, hx, weights, self.bias, 1, 0.0, self.training, False, self.batch_first)


class GRU(_LayerByLayer, nn.GRU):
    """``torch.nn.GRU`` whose between-layer dropout draws the fast mask (CPU training)."""

    def _run(self, x, hx, weights):
        return torch.gru(x, hx[0], weights, self.bias, 1, 0.0, self.training, False, self.batch_first)
