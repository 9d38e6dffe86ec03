"""Recurrent layers from scratch (drop-ins for torch.nn's) and the AWD-LSTM dropouts.

* :mod:`looplm.nn.cells`: one time step, readable (the chapter's cells, both LSTM forms)
* :mod:`looplm.nn.layers`: ``RNN``, ``GRU``, ``LSTM``, multi-layer, torch.nn's interface
* :mod:`looplm.nn.fast`: their time loops with a hand-written backward pass
* :mod:`looplm.nn.native`: the LSTM's loops in C++ (``csrc/``), built on first use
* :mod:`looplm.nn.dropout`: plain (fast mask), the chapter's (``ChapterDropout``), embedding,
  RNN (per-sequence mask) and weight dropout
* :mod:`looplm.nn.stacked`: torch.nn's LSTM and GRU with the fast mask between their layers
"""

from looplm.nn.cells import (GRUCell, LSTMCell, LSTMCellFourGates, RNNCell, gru_cell,
                             lstm_cell, rnn_cell)
from looplm.nn.dropout import ChapterDropout, Dropout, EmbeddingDropout, RNNDropout, WeightDropout
from looplm.nn.layers import GRU, LSTM, RNN

__all__ = [
    "RNN", "GRU", "LSTM",
    "RNNCell", "GRUCell", "LSTMCell", "LSTMCellFourGates", "rnn_cell", "gru_cell", "lstm_cell",
    "ChapterDropout", "Dropout", "EmbeddingDropout", "RNNDropout", "WeightDropout",
]
