"""LMModel1-LMModel4: the chapter's hand-written RNNs, with explicit state.

All four share three layers: ``i_h`` (token -> hidden), ``h_h`` (hidden -> hidden,
the one weight reused at every step) and ``h_o`` (hidden -> vocab). One step is::

    h = relu(h_h(h + i_h(x_t)))          # h: (bs, n_hidden)

The chapter's classes keep ``self.h`` and a ``reset()``; these take the state as
an argument and return the new one, and leave detaching at chunk boundaries to
the trainer (that is truncated BPTT, and it belongs to the training strategy).

Each readable per-step loop has a fast path with the same result: the step
above is ``torch.nn.RNN``'s relu step with ``W_ih = W_hh = h_h.weight``, so
PyTorch's fused ``rnn_relu`` kernel runs the time loop in C++.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from looplm.models.config import ChapterRNNConfig
from looplm.state import fit_state


class _ChapterRNN(nn.Module):
    """The three layers of LMModel1-4 and the shared recurrence."""

    def __init__(self, config: ChapterRNNConfig):
        super().__init__()
        self.config = config
        self.i_h = nn.Embedding(config.vocab_sz, config.n_hidden)
        self.h_h = nn.Linear(config.n_hidden, config.n_hidden)
        self.h_o = nn.Linear(config.n_hidden, config.vocab_sz)

    def _initial(self, x: Tensor, state: Tensor | None) -> Tensor:
        """State (1, bs, n_hidden): the one given, or zeros for a new or resized batch."""
        state = fit_state(state, x.shape[0])
        if state is None:
            return x.new_zeros((1, x.shape[0], self.config.n_hidden), dtype=self.h_h.weight.dtype)
        return state

    def _run(self, emb: Tensor, h0: Tensor) -> Tensor:
        """Hidden states after every step: emb (bs, T, n_hidden), h0 (1, bs, n_hidden) -> (bs, T, n_hidden)."""
        if not self.config.fast:
            h, outs = h0[0], []
            for t in range(emb.shape[1]):
                h = F.relu(self.h_h(h + emb[:, t]))
                outs.append(h)
            return torch.stack(outs, dim=1)
        w, b = self.h_h.weight, self.h_h.bias
        out, _ = torch.rnn_relu(emb, h0, [w, w, b, torch.zeros_like(b)], True, 1, 0.0, self.training, False, True)
        return out


class LMModel1(_ChapterRNN):
    """Three fixed steps, written out: predicts the 4th token from 3. Stateless.

    forward(x (bs, 3), state ignored) -> (logits (bs, vocab), None)
    """

    layout = "last"

    def forward(self, x: Tensor, state: None = None) -> tuple[Tensor, None]:
        if x.shape[1] != 3:
            raise ValueError(f"LMModel1 reads exactly 3 tokens, got sl={x.shape[1]}")
        h = F.relu(self.h_h(self.i_h(x[:, 0])))
        h = h + self.i_h(x[:, 1])
        h = F.relu(self.h_h(h))
        h = h + self.i_h(x[:, 2])
        h = F.relu(self.h_h(h))
        return self.h_o(h), None


class LMModel2(_ChapterRNN):
    """The same net as a loop over any sl; the state starts at zero for every sample.

    forward(x (bs, sl), state ignored) -> (logits (bs, vocab), None)
    """

    layout = "last"

    def forward(self, x: Tensor, state: None = None) -> tuple[Tensor, None]:
        hs = self._run(self.i_h(x), self._initial(x, None))
        return self.h_o(hs[:, -1]), None


class LMModel3(_ChapterRNN):
    """LMModel2 that carries its state from batch to batch (stateful; BPTT over sl).

    forward(x (bs, sl), state (1, bs, n_hidden) | None) -> (logits (bs, vocab), state)
    """

    layout = "last"

    def forward(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        hs = self._run(self.i_h(x), self._initial(x, state))
        return self.h_o(hs[:, -1]), hs[:, -1].unsqueeze(0)


class LMModel4(_ChapterRNN):
    """A prediction after every token, not only the last: sl targets per sample. Stateful.

    forward(x (bs, sl), state (1, bs, n_hidden) | None) -> (logits (bs, sl, vocab), state)
    """

    layout = "every"

    def forward(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        hs = self._run(self.i_h(x), self._initial(x, state))  # (bs, sl, n_hidden)
        return self.h_o(hs), hs[:, -1].unsqueeze(0)
