"""Online learning on an endless stream: pieces of 1 to 50 steps, TBPTT(k1=1, k2=32).

    python examples/online_stream.py                   # 2000 steps
    python examples/online_stream.py --steps 100000    # memory stays flat

A sensor sends readings in pieces of random length, as they arrive; after every
step the model (a GRU) is updated to predict the next reading, backpropagating
through the last 32 steps whatever the pieces were::

    sensor    |-7-|--------23---------|1|----12----|...      endless
    updates    an update after every step (k1 = 1)
    window     the 32 steps before it, across pieces  (k2 = 32)

The reading is a sine whose period drifts between 16 and 24 steps, plus noise:
predicting the next one needs the phase and the current period, which the state
must keep. A model that repeats the last reading scores the "naive" error. The
stream keeps at most k1 + k2 + one piece of inputs and k2 steps of graph, so the
resident memory stays flat however long it runs.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import deque
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from looplm.tbptt import TBPTTStream


def sensor(seed: int, noise: float = 0.05) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless pieces (inputs, targets), each (1, n, 1) float32 with n in 1..50;
    targets[:, t] is the reading after inputs[:, t]."""
    gen = torch.Generator().manual_seed(seed)
    phase, t = 0.0, 0
    reading = torch.zeros(1)
    while True:
        n = int(torch.randint(1, 51, (), generator=gen))
        period = 20 + 4 * torch.sin(2 * math.pi * (t + torch.arange(1, n + 1)) / 20000)  # drifts slowly
        phases = phase + torch.cumsum(2 * math.pi / period, 0)
        readings = torch.sin(phases) + noise * torch.randn(n, generator=gen)
        series = torch.cat([reading, readings])  # the last reading of the previous piece first
        yield series[:-1].view(1, n, 1), series[1:].view(1, n, 1)
        phase, t, reading = float(phases[-1]), t + n, readings[-1:]


class Forecaster(nn.Module):
    def __init__(self, n_hidden: int):
        super().__init__()
        self.gru = nn.GRU(1, n_hidden, batch_first=True)
        self.head = nn.Linear(n_hidden, 1)

    def forward(self, x, state=None):
        h, state = self.gru(x, state)  # (1, n, n_hidden)
        return self.head(h), state  # (1, n, 1)


def rss_mb() -> float:
    """Resident memory of this process (Linux), in MB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000, help="stop after this many steps (the sensor is endless)")
    p.add_argument("--k1", type=int, default=1)
    p.add_argument("--k2", type=int, default=32)
    p.add_argument("--n-hidden", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="small tensors: more threads only contend")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = Forecaster(args.n_hidden)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    stream = TBPTTStream(model, args.k1, args.k2, loss_fn=lambda out, y: F.mse_loss(out, y, reduction="sum"))
    log, start = [], time.perf_counter()
    fed, naive, kept_inputs, kept_graph = 0, 0.0, 0, 0
    recent = deque(maxlen=500)  # the last losses: nothing grows with the stream's length
    for x, y in sensor(args.seed):
        for step in stream.feed(x, y):
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # one noisy step must not undo the rest
            opt.step()
            opt.zero_grad()
            recent.append(step.loss)
        naive += ((y - x) ** 2).sum().item()
        fed += x.shape[1]
        kept_inputs, kept_graph = max(kept_inputs, stream.kept[0]), max(kept_graph, stream.kept[1])
        if len(log) * args.steps // 8 <= fed:  # eight reports over the run
            log.append(dict(steps=fed, mse=torch.stack(list(recent)).mean().item(), rss_mb=rss_mb()))
            print(f"{fed:>8} steps  mse (last {len(recent)} updates) {log[-1]['mse']:.4f}  "
                  f"RSS {log[-1]['rss_mb']:.1f} MB  {time.perf_counter() - start:.0f} s")
        if fed >= args.steps:
            break
    naive_mse = naive / fed
    print(f"naive (repeat the last reading): mse {naive_mse:.4f}; noise floor {0.05 ** 2:.4f}")
    print(f"kept at most {kept_inputs} steps of inputs and {kept_graph} steps of graph")
    return dict(log=log, naive_mse=naive_mse, kept_inputs=kept_inputs, kept_graph=kept_graph)


if __name__ == "__main__":
    main()
