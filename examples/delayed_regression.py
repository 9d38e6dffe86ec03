"""Time-series regression with a GRU: the target needs an input d steps back.

    python examples/delayed_regression.py                 # d = 4: k2 = 8, then k2 = 4
    python examples/delayed_regression.py --delay 6 --k2 12 4

Inputs are white noise, x_t ~ N(0, I), shape (bs, T, features), float32; the target
reads feature 0 d steps back and feature 1 now:

    y_t = x_{t-d}[0] + 0.5 * x_t[1]               (bs, T, 1)

so a model that cannot remember d steps back explains at best the 0.5 * x_t part:
R^2 = 0.25 / 1.25 = 0.2 (the "d-blind baseline"), and one that can explains all of
it (R^2 = 1, no noise). TBPTT(k1, k2) can only teach the GRU to keep x_{t-d} if a
gradient path from the loss at t reaches the step t - d, i.e. if k2 > d::

    k2 = 8 > d = 4    window [t-7, t]: the loss at t reaches x_{t-4}      -> learns
    k2 = 4 = d        window [t-3, t]: x_{t-4} entered in the constant state -> 0.2

The other features are distractors. Why the two parts read different features: if
y_t read x_t[0] too, every window would teach the GRU to write x_t[0] into its state
and the gate training of k2 <= d windows would teach it to keep it, so x_{t-d}[0]
would be read out of the state without any gradient reaching t - d (R^2 0.70 at
k2 = d = 4); with a GRU given one feature only, the chance memory of its random
weights gives the same leak (0.85).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from looplm.tbptt import truncated_bptt


class GRURegressor(nn.Module):
    def __init__(self, features: int, n_hidden: int):
        super().__init__()
        self.gru = nn.GRU(features, n_hidden, batch_first=True)
        self.head = nn.Linear(n_hidden, 1)

    def forward(self, x, state=None):
        h, state = self.gru(x, state)  # (bs, n, n_hidden)
        return self.head(h), state  # (bs, n, 1)


def delayed_stream(bs: int, T: int, delay: int, features: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """inputs (bs, T, features) and targets (bs, T, 1), float32:
    targets[:, t] = x[t - delay, 0] + 0.5 x[t, 1]."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(bs, T + delay, features, generator=gen)
    return x[:, delay:], x[:, :T, :1] + 0.5 * x[:, delay:, 1:2]


def summed_mse(out, y):
    """Summed over steps and rows: TBPTT divides by bs x the stride's length."""
    return F.mse_loss(out, y, reduction="sum")


def r_squared(model: nn.Module, delay: int, features: int, seed: int = 1) -> float:
    """Variance explained on a fresh stream, skipping the first ``delay`` steps."""
    x, y = delayed_stream(16, 2000, delay, features, seed)
    with torch.no_grad():
        out, _ = model(x)
    y, out = y[:, delay:], out[:, delay:]
    return 1 - ((out - y) ** 2).mean().item() / y.var().item()


def train(k1: int, k2: int, args) -> float:
    torch.manual_seed(args.seed)
    model = GRURegressor(args.features, args.n_hidden)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    x, y = delayed_stream(args.bs, args.steps, args.delay, args.features, args.seed)
    for _ in range(args.epochs):
        for _ in truncated_bptt(model, x, y, k1, k2, loss_fn=summed_mse):
            opt.step()
            opt.zero_grad()
    return r_squared(model, args.delay, args.features)


def main(argv: list[str] | None = None) -> dict[int, float]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--delay", type=int, default=4)
    p.add_argument("--k1", type=int, default=4)
    p.add_argument("--k2", type=int, nargs="+", default=[8, 4], help="one training per k2")
    p.add_argument("--features", type=int, default=8)
    p.add_argument("--bs", type=int, default=32)
    p.add_argument("--steps", type=int, default=1000, help="steps per row of the training stream")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--n-hidden", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="small tensors: more threads only contend")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    baseline = 0.25 / 1.25
    print(f"y_t = x_(t-{args.delay})[0] + 0.5 x_t[1], {args.features} features; d-blind baseline R^2 = {baseline:.2f}, possible R^2 = 1")
    results = {}
    for k2 in args.k2:
        start = time.perf_counter()
        results[k2] = train(args.k1, k2, args)
        print(f"TBPTT(k1={args.k1}, k2={k2:>2}): R^2 = {results[k2]:.4f}   "
              f"({'k2 > d' if k2 > args.delay else 'k2 <= d'}, {time.perf_counter() - start:.1f} s)")
    return results


if __name__ == "__main__":
    main()
