"""The bor-bor-zan notebook's LModel7 cell trained by fastai itself: the peer side of
benchmarks/borborzan_lm7.py.

Runs in an interpreter that has fastai (never looplm's venv; see fastai_chapter12.py for how
that venv is made). ``borborzan_lm7.py --fastai-python PATH`` writes looplm's bor-bor-zan
train and valid streams as ``.npy`` token ids and starts

    PATH benchmarks/fastai_borborzan.py --train T.npy --valid V.npy --seed S [--threads 1]

Written from the notebook's description (not copied): samples of 6 tokens cut every 6 tokens
with the next 6 as targets, ``group_chunks`` into 128 rows, ``TextLearner`` (AR 2, TAR 1,
moms 0.8/0.7/0.8) with an embedding of 64, a 2-layer ``nn.LSTM``, dropout 0.4 and the output
tied to the embedding, ``fit_one_cycle(5, 1e-2, wd=0.1)``. Prints one JSON object on the last
line: {"fastai": ver, "torch": ver, "seed": s, "valid_loss": [...], "accuracy": [...], "seconds": s}.
"""

from __future__ import annotations

import argparse
import json
import time

import fastai
import fastai.callback.progress  # noqa: F401  (patches Learner.no_bar)
import fastai.callback.schedule  # noqa: F401  (patches Learner.fit_one_cycle)
import numpy as np
import torch
from fastai.data.core import DataLoaders
from fastai.losses import CrossEntropyLossFlat
from fastai.metrics import accuracy
from fastai.text.learner import TextLearner
from fastai.torch_core import Module
from fastcore.foundation import L
from torch import nn

BS, SL, N_HIDDEN, N_LAYERS, P = 128, 6, 64, 2, 0.4


def samples(ids: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(x, y) pairs of SL tokens cut every SL tokens, y the same positions one token on."""
    return [(torch.tensor(ids[i:i + SL]), torch.tensor(ids[i + 1:i + SL + 1])) for i in range(0, len(ids) - SL - 1, SL)]


def group_chunks(ds: list, bs: int) -> L:
    """Row j of batch k is sample k + m*j: each row reads on through the stream."""
    m = len(ds) // bs
    return L(ds[i + m * j] for i in range(m) for j in range(bs))


class LModel7(Module):
    def __init__(self, vocab_sz: int):
        self.i_h = nn.Embedding(vocab_sz, N_HIDDEN)
        self.rnn = nn.LSTM(N_HIDDEN, N_HIDDEN, N_LAYERS, batch_first=True)
        self.drop = nn.Dropout(P)
        self.h_o = nn.Linear(N_HIDDEN, vocab_sz)
        self.h_o.weight = self.i_h.weight
        self.h = [torch.zeros(N_LAYERS, BS, N_HIDDEN) for _ in range(2)]

    def forward(self, x):
        raw, h = self.rnn(self.i_h(x), self.h)
        out = self.drop(raw)
        self.h = [h_.detach() for h_ in h]
        return self.h_o(out), raw, out

    def reset(self):
        for h in self.h:
            h.zero_()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--valid", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train_ids, valid_ids = (np.load(p).astype(np.int64).tolist() for p in (args.train, args.valid))
    vocab_sz = max(max(train_ids), max(valid_ids)) + 1
    dls = DataLoaders.from_dsets(group_chunks(samples(train_ids), BS), group_chunks(samples(valid_ids), BS),
                                 bs=BS, shuffle=False)
    learn = TextLearner(dls, LModel7(vocab_sz), loss_func=CrossEntropyLossFlat(), metrics=accuracy)
    start = time.perf_counter()
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(5, 1e-2, wd=0.1)
    values = learn.recorder.values
    print(json.dumps({"fastai": fastai.__version__, "torch": torch.__version__, "seed": args.seed,
                      "valid_loss": [float(v[1]) for v in values], "accuracy": [float(v[2]) for v in values],
                      "seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main()
