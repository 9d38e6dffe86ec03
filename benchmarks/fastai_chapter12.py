"""The chapter's models trained by fastai itself: the peer side of train_throughput.py.

Runs in an interpreter that has fastai (never looplm's venv), for example one made with
``python3 -m venv /work/fastai-venv && /work/fastai-venv/bin/pip install torch==2.14.1
fastai==2.8.12``. ``benchmarks/train_throughput.py --fastai-python PATH`` starts it and
passes the Human Numbers text, so both sides read the same token stream:

    PATH benchmarks/fastai_chapter12.py --text FILE [--threads N] [--epochs 3] [--repeats 3] [--clock cpu]

Written from the chapter's description (not copied): the token stream split on spaces,
``L(*tokens).unique()`` as the vocab, samples of sl tokens cut every sl tokens (every 3
for LMModel1-3, one target each), the first 80% of the samples for training, the
chapter's ``group_chunks`` for the stateful models, fastai's ``Learner`` with
``ModelResetter`` (``TextLearner`` for LModel7: AR/TAR and moms 0.8/0.7/0.8), the
chapter's epochs and learning rates. Prints one JSON object on the last line:

    {"fastai": ver, "torch": ver, "threads": n,
     "train_tokens_per_s": {"lm4": .., "lm7": ..},      # best of --repeats, training only
     "chapter_seconds": s, "chapter_accuracy": {"lm1": .., ...}}   # all seven, with validation
"""

from __future__ import annotations

import argparse
import json
import os
import time

import fastai
import fastai.callback.progress  # noqa: F401  (patches Learner.no_bar)
import fastai.callback.schedule  # noqa: F401  (patches Learner.fit_one_cycle)
import torch
import torch.nn.functional as F
from fastai.callback.core import Callback
from fastai.callback.rnn import ModelResetter
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.metrics import accuracy
from fastai.text.learner import TextLearner
from fastai.torch_core import Module
from fastcore.foundation import L
from torch import nn

BS, N_HIDDEN = 64, 64


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (the data loaders' workers)."""
    t = os.times()  # children: finished ones only, in clock ticks; ours: the fine-grained clock
    return time.process_time() + t.children_user + t.children_system


clock = time.perf_counter  # or cpu_seconds (--clock cpu)


class LMModel1(Module):
    def __init__(self, vocab_sz, n_hidden):
        self.i_h, self.h_h, self.h_o = nn.Embedding(vocab_sz, n_hidden), nn.Linear(n_hidden, n_hidden), nn.Linear(n_hidden, vocab_sz)

    def forward(self, x):
        h = F.relu(self.h_h(self.i_h(x[:, 0])))
        h = F.relu(self.h_h(h + self.i_h(x[:, 1])))
        h = F.relu(self.h_h(h + self.i_h(x[:, 2])))
        return self.h_o(h)


class LMModel2(LMModel1):
    def forward(self, x):
        h = 0
        for i in range(3):
            h = F.relu(self.h_h(h + self.i_h(x[:, i])))
        return self.h_o(h)


class LMModel3(LMModel1):
    def __init__(self, vocab_sz, n_hidden):
        super().__init__(vocab_sz, n_hidden)
        self.h = 0

    def forward(self, x):
        for i in range(3):
            self.h = F.relu(self.h_h(self.h + self.i_h(x[:, i])))
        out = self.h_o(self.h)
        self.h = self.h.detach()
        return out

    def reset(self):
        self.h = 0


class LMModel4(LMModel3):
    def forward(self, x):
        outs = []
        for i in range(x.shape[1]):
            self.h = F.relu(self.h_h(self.h + self.i_h(x[:, i])))
            outs.append(self.h_o(self.h))
        self.h = self.h.detach()
        return torch.stack(outs, dim=1)


class LMModel5(Module):
    def __init__(self, vocab_sz, n_hidden, n_layers):
        self.i_h = nn.Embedding(vocab_sz, n_hidden)
        self.rnn = nn.RNN(n_hidden, n_hidden, n_layers, batch_first=True)
        self.h_o = nn.Linear(n_hidden, vocab_sz)
        self.h = torch.zeros(n_layers, BS, n_hidden)

    def forward(self, x):
        res, h = self.rnn(self.i_h(x), self.h)
        self.h = h.detach()
        return self.h_o(res)

    def reset(self):
        self.h.zero_()


class LModel6(Module):
    def __init__(self, vocab_sz, n_hidden, n_layers):
        self.i_h = nn.Embedding(vocab_sz, n_hidden)
        self.rnn = nn.LSTM(n_hidden, n_hidden, n_layers, batch_first=True)
        self.h_o = nn.Linear(n_hidden, vocab_sz)
        self.h = [torch.zeros(n_layers, BS, n_hidden) for _ in range(2)]

    def forward(self, x):
        res, h = self.rnn(self.i_h(x), self.h)
        self.h = [h_.detach() for h_ in h]
        return self.h_o(res)

    def reset(self):
        for h in self.h:
            h.zero_()


class LModel7(LModel6):
    def __init__(self, vocab_sz, n_hidden, n_layers, p):
        super().__init__(vocab_sz, n_hidden, n_layers)
        self.drop = nn.Dropout(p)
        self.h_o.weight = self.i_h.weight

    def forward(self, x):
        raw, h = self.rnn(self.i_h(x), self.h)
        out = self.drop(raw)
        self.h = [h_.detach() for h_ in h]
        return self.h_o(out), raw, out


def group_chunks(ds, bs):
    m = len(ds) // bs
    new_ds = L()
    for i in range(m):
        new_ds += L(ds[i + m * j] for j in range(bs))
    return new_ds


def chapter_dls(nums, sl: int, every: bool, group: bool) -> DataLoaders:
    """The chapter's DataLoaders: sl 3 with one target (LMModel1-3) or a target at every step."""
    if every:
        seqs = L((torch.tensor(nums[i:i + sl]), torch.tensor(nums[i + 1:i + sl + 1]))
                 for i in range(0, len(nums) - sl - 1, sl))
    else:
        seqs = L((torch.tensor(nums[i:i + sl]), nums[i + sl]) for i in range(0, len(nums) - 4, sl))
    cut = int(len(seqs) * 0.8)
    if not group:
        return DataLoaders.from_dsets(seqs[:cut], seqs[cut:], bs=BS, shuffle=False)
    return DataLoaders.from_dsets(group_chunks(seqs[:cut], BS), group_chunks(seqs[cut:], BS),
                                  bs=BS, drop_last=True, shuffle=False)


class TrainClock(Callback):
    """Seconds spent in training phases only (validation excluded)."""

    order = -100

    def before_fit(self):
        self.seconds = 0.0

    def before_train(self):
        self.start = clock()

    def after_train(self):
        self.seconds += clock() - self.start


def chapter_learner(name: str, dls: DataLoaders, vocab_sz: int) -> Learner:
    flat = CrossEntropyLossFlat()
    if name == "lm1":
        return Learner(dls, LMModel1(vocab_sz, N_HIDDEN), loss_func=F.cross_entropy, metrics=accuracy)
    if name == "lm2":
        return Learner(dls, LMModel2(vocab_sz, N_HIDDEN), loss_func=F.cross_entropy, metrics=accuracy)
    if name == "lm3":
        return Learner(dls, LMModel3(vocab_sz, N_HIDDEN), loss_func=F.cross_entropy, metrics=accuracy,
                       cbs=ModelResetter)
    if name == "lm4":
        return Learner(dls, LMModel4(vocab_sz, N_HIDDEN), loss_func=flat, metrics=accuracy, cbs=ModelResetter)
    if name == "lm5":
        return Learner(dls, LMModel5(vocab_sz, N_HIDDEN, 2), loss_func=flat, metrics=accuracy, cbs=ModelResetter)
    if name == "lm6":
        return Learner(dls, LModel6(vocab_sz, N_HIDDEN, 2), loss_func=flat, metrics=accuracy, cbs=ModelResetter)
    return TextLearner(dls, LModel7(vocab_sz, N_HIDDEN, 2, 0.4), loss_func=flat, metrics=accuracy)


# name, epochs, lr, sl, a target at every step, grouped rows, wd (None: fastai's default)
CHAPTER = (
    ("lm1", 4, 1e-3, 3, False, False, None), ("lm2", 4, 1e-3, 3, False, False, None),
    ("lm3", 10, 3e-3, 3, False, True, None), ("lm4", 15, 3e-3, 16, True, True, None),
    ("lm5", 15, 3e-3, 16, True, True, None), ("lm6", 15, 1e-2, 16, True, True, None),
    ("lm7", 15, 1e-2, 16, True, True, 0.1),
)


def fit(name: str, nums, vocab_sz: int, epochs: int | None = None, seed: int = 0) -> tuple[Learner, TrainClock]:
    """One chapter model trained as the chapter trains it (``epochs`` overrides the count)."""
    _, n_epochs, lr, sl, every, group, wd = next(run for run in CHAPTER if run[0] == name)
    torch.manual_seed(seed)
    learn = chapter_learner(name, chapter_dls(nums, sl, every, group), vocab_sz)
    timer = TrainClock()
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(epochs or n_epochs, lr, wd=wd, cbs=[timer])
    return learn, timer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", required=True, help="the Human Numbers text: lines joined with ' . '")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per throughput measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-chapter", action="store_true", help="only the lm4/lm7 throughput")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = parser.parse_args()
    global clock
    clock = cpu_seconds if args.clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    with open(args.text, encoding="utf-8") as f:
        tokens = f.read().split(" ")
    vocab = L(*tokens).unique()
    word2idx = {w: i for i, w in enumerate(vocab)}
    nums = L(word2idx[t] for t in tokens)
    result = {"fastai": fastai.__version__, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "train_tokens_per_s": {}}
    for name in ("lm4", "lm7"):
        best = 0.0
        for _ in range(args.repeats):
            learn, timer = fit(name, nums, len(vocab), epochs=args.epochs)
            tokens_seen = len(learn.dls.train) * BS * 16 * args.epochs
            best = max(best, tokens_seen / timer.seconds)
        result["train_tokens_per_s"][name] = best
    if not args.skip_chapter:
        start, finals = clock(), {}
        for name, *_ in CHAPTER:
            learn, _ = fit(name, nums, len(vocab))
            finals[name] = float(learn.recorder.values[-1][2])
        result["chapter_seconds"] = clock() - start
        result["chapter_accuracy"] = finals
    print(json.dumps(result))


if __name__ == "__main__":
    main()
