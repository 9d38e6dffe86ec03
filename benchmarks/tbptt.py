"""TBPTT(k1, k2): time per token, forward passes per token and peak memory.

    .venv/bin/python benchmarks/tbptt.py            # both tables (several minutes on 2 CPU cores)
    .venv/bin/python benchmarks/tbptt.py --no-memory
    .venv/bin/python benchmarks/tbptt.py --no-timing --mem-steps 10000 1000000

Each run trains an Embedding -> LSTM -> Linear language model on a random stream
with SGD, stepping between updates as the learner does, for every (k1, k2) in
both modes, and for the naive sliding window that re-runs the whole window of
k2 steps for every token (the seed question's "compute each step K times").

Peak memory: a fresh subprocess per stream length trains a GRU on a float
stream of (1, T, 4) sensor readings that a generator makes on the fly, in pieces
of 1 to 50 steps fed to a TBPTTStream; nothing but the stream's own holdings
could grow with T. Reported: the peak resident set size (Linux's VmHWM) and its
growth over the RSS just before the first piece (model and stream built).
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import time

import torch
from torch import nn

import torch.nn.functional as F

from looplm.state import detach_state
from looplm.tbptt import TBPTTStream, summed_cross_entropy, truncated_bptt

CONFIGS = [(16, 16), (4, 16), (1, 16)]


class LM(nn.Module):
    """Counts the token-steps it runs, to report forward passes per token."""

    def __init__(self, vocab_sz: int, n_hidden: int):
        super().__init__()
        self.emb = nn.Embedding(vocab_sz, 64)
        self.rnn = nn.LSTM(64, n_hidden, batch_first=True)
        self.out = nn.Linear(n_hidden, vocab_sz)
        self.steps = 0

    def forward(self, x, state=None):
        self.steps += x.numel()
        h, state = self.rnn(self.emb(x), state)  # (bs, T, n_hidden)
        return self.out(h), state  # (bs, T, vocab)


def naive(model, inputs, targets, k2):
    """For every step t, re-run the window [t - k2 + 1, t + 1) from the detached state kept
    k2 - 1 steps back and backpropagate the loss at t (the seed's "compute each step K times")."""
    states = collections.deque([None], maxlen=k2)  # states[0] enters the window
    bs, T = inputs.shape
    for t in range(T):
        b = max(0, t - k2 + 1)
        # two calls, so that the decoder of the steps before t stays out of the backward
        state = model(inputs[:, b:t], states[0])[1] if t > b else states[0]
        logits, state = model(inputs[:, t:t + 1], state)
        (summed_cross_entropy(logits, targets[:, t:t + 1]) / bs).backward()
        states.append(detach_state(state))
        yield


def train(args, strategy: str, k1: int, k2: int, T: int) -> tuple[float, float]:
    """(seconds per token, forward passes per token) for one strategy over a bs x T stream."""
    torch.manual_seed(0)
    model = LM(args.vocab_sz, args.n_hidden)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    inputs = torch.randint(args.vocab_sz, (args.bs, T))
    targets = torch.randint(args.vocab_sz, (args.bs, T))
    steps = (naive(model, inputs, targets, k2) if strategy == "naive"
             else truncated_bptt(model, inputs, targets, k1, k2, mode=strategy))
    start = time.perf_counter()
    for _ in steps:
        opt.step()
        opt.zero_grad()
    return (time.perf_counter() - start) / inputs.numel(), model.steps / inputs.numel()


def timing_table(args) -> None:
    kernels = "oneDNN" if torch.backends.mkldnn.enabled else "native"
    print(f"time per token: LSTM n_hidden={args.n_hidden} ({kernels}), vocab {args.vocab_sz}, bs={args.bs}, "
          f"{args.steps} steps, float32, {torch.get_num_threads()} threads; best of {args.repeat}")
    print(f"{'k1':>3} {'k2':>3}  {'mode':<10}{'us/token':>10}{'fwd/token':>11}{'vs recompute':>14}")
    train(args, "stored", 4, 16, 32)  # warm-up
    for k1, k2 in args.configs:
        rows = ["recompute", "stored"] + (["naive"] if k1 == 1 and not args.no_naive else [])
        runs = {mode: [] for mode in rows}
        for _ in range(args.repeat):  # interleaved, so that a busy spell hits every mode
            for mode in rows:
                runs[mode].append(train(args, mode, k1, k2, args.steps))
        best = {mode: min(r) for mode, r in runs.items()}
        for mode in rows:
            sec, fwd = best[mode]
            print(f"{k1:>3} {k2:>3}  {mode:<10}{sec * 1e6:>10.1f}{fwd:>11.2f}"
                  f"{best['recompute'][0] / sec:>13.2f}x")
        if (k1, k2) == (1, 16):  # the README promises >= 1.3
            print(f"stored vs recompute at (1, 16): {best['recompute'][0] / best['stored'][0]:.2f}x")


class Sensor(nn.Module):
    """GRU over (1, n, 4) float readings -> (1, n, 1) forecasts."""

    def __init__(self, n_hidden: int):
        super().__init__()
        self.gru = nn.GRU(4, n_hidden, batch_first=True)
        self.head = nn.Linear(n_hidden, 1)

    def forward(self, x, state=None):
        h, state = self.gru(x, state)  # (1, n, n_hidden)
        return self.head(h), state


def sensor_pieces(steps: int, seed: int = 0):
    """Pieces (x (1, n, 4), y (1, n, 1)) float32, n in 1..50, made on the fly, ``steps`` in all."""
    gen = torch.Generator().manual_seed(seed)
    fed = 0
    while fed < steps:
        n = min(steps - fed, int(torch.randint(1, 51, (), generator=gen)))
        x = torch.randn(1, n, 4, generator=gen)
        yield x, x[..., :1].roll(1, dims=1)
        fed += n


def _status_kb(field: str) -> int:
    """A memory figure of this process from /proc/self/status (Linux), in kB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def memory_run(args) -> None:
    """In a fresh process: train on args.tokens steps fed in pieces, print memory in kB.

    VmHWM is the peak RSS since exec (ru_maxrss would include the parent's, inherited
    at fork); writing 5 to clear_refs resets it, so the peak covers training only.
    """
    torch.manual_seed(0)
    model = Sensor(args.mem_hidden)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    stream = TBPTTStream(model, args.k1, args.k2, lambda out, y: F.mse_loss(out, y, reduction="sum"), args.mode)
    pieces = sensor_pieces(args.tokens)
    before = _status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    start = time.perf_counter()
    for x, y in pieces:
        for _ in stream.feed(x, y):
            opt.step()
            opt.zero_grad()
    for _ in stream.flush():
        opt.step()
        opt.zero_grad()
    print(json.dumps({"before_kb": before, "peak_kb": _status_kb("VmHWM"), "seconds": time.perf_counter() - start}))


def memory_table(args) -> None:
    k1, k2 = args.mem_k
    print(f"\npeak memory, TBPTTStream({k1}, {k2}), stored: GRU n_hidden={args.mem_hidden} on (1, T, 4) float "
          f"readings in pieces of 1 to 50 steps, one process per run, {torch.get_num_threads()} threads")
    print(f"{'steps':>9}{'peak RSS MB':>13}{'training MB':>13}{'seconds':>9}")
    peaks = []
    for steps in args.mem_steps:
        cmd = [sys.executable, __file__, "--memory-run", "--tokens", str(steps), "--mode", "stored",
               "--k1", str(k1), "--k2", str(k2), "--mem-hidden", str(args.mem_hidden),
               "--threads", str(torch.get_num_threads())]
        out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
        peaks.append(out["peak_kb"])
        print(f"{steps:>9}{out['peak_kb'] / 1024:>13.1f}{(out['peak_kb'] - out['before_kb']) / 1024:>13.1f}"
              f"{out['seconds']:>9.0f}")
    print(f"peak RSS, longest / shortest stream: {peaks[-1] / peaks[0]:.3f} (flat: within 1.10)")


def _pair(text: str) -> tuple[int, int]:
    k1, k2 = text.split(",")
    return int(k1), int(k2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--n-hidden", type=int, default=256)
    p.add_argument("--vocab-sz", type=int, default=10_000)
    p.add_argument("--steps", type=int, default=64, help="stream length per row for the timings")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--mem-hidden", type=int, default=32, help="n_hidden for the memory runs")
    p.add_argument("--mem-k", type=int, nargs=2, default=[32, 64], metavar=("K1", "K2"),
                   help="TBPTT(k1, k2) of the memory runs")
    p.add_argument("--mem-steps", type=int, nargs="+", default=[10**4, 10**6],
                   help="stream lengths of the memory runs, shortest first")
    p.add_argument("--configs", type=_pair, nargs="+", default=CONFIGS, metavar="K1,K2",
                   help="the (k1, k2) of the timings, e.g. 1,16")
    p.add_argument("--no-naive", action="store_true", help="skip the naive sliding window at k1 = 1")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--no-timing", action="store_true")
    p.add_argument("--no-onednn", action="store_true",
                   help="torch.nn.LSTM's native CPU kernels instead of oneDNN's fused LSTM")
    # one memory measurement, run by memory_table in a subprocess
    p.add_argument("--memory-run", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--tokens", type=int, help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--k1", type=int, help=argparse.SUPPRESS)
    p.add_argument("--k2", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.backends.mkldnn.enabled = not args.no_onednn
    if args.memory_run:
        memory_run(args)
        return
    if not args.no_timing:
        timing_table(args)
    if not args.no_memory:
        memory_table(args)


if __name__ == "__main__":
    main()
