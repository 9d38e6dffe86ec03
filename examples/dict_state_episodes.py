"""Your own model with a dict state, in your own training loop: episodes with resets.

    python examples/dict_state_episodes.py              # 150 episodes

The model is an LSTM that also counts the steps of the episode so far; its state
is a dict holding a tuple and an integer tensor, which TBPTTStream carries and
detaches like any other (the count gets no gradient, being an integer)::

    state = {"lstm": (h, c),          # (1, bs, n_hidden) each
             "step": n}               # (bs,) int64, steps seen in this episode

The task: after every step, the mean of the episode's readings so far,
y_t = (x_0 + ... + x_t) / (t + 1). The model is given x_t and 1 / (n + 1) from its
count. An episode is 20 to 80 steps; it arrives in pieces of 1 to 16 steps; at
its end ``flush()`` trains on the last, shorter stride and ``reset()`` starts
the next episode from a fresh state, so no window reaches across episodes::

    episode 1 |-5-|---9---|2|--7--|  flush, reset    episode 2 |---9---|-4-|...
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from looplm.tbptt import TBPTTStream


class CountingLSTM(nn.Module):
    """forward(x, state) -> (out, state): x (bs, n, 1) readings, out (bs, n, 1)."""

    def __init__(self, n_hidden: int):
        super().__init__()
        self.lstm = nn.LSTM(2, n_hidden, batch_first=True)
        self.head = nn.Linear(n_hidden, 1)

    def forward(self, x, state=None):
        bs, n, _ = x.shape
        if state is None:
            state = {"lstm": None, "step": torch.zeros(bs, dtype=torch.int64)}
        steps = state["step"][:, None] + torch.arange(1, n + 1)  # (bs, n): the count after each step
        features = torch.cat([x, (1.0 / steps).unsqueeze(-1).to(x.dtype)], dim=-1)  # (bs, n, 2)
        h, lstm_state = self.lstm(features, state["lstm"])
        return self.head(h), {"lstm": lstm_state, "step": steps[:, -1]}


def episode(bs: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """inputs (bs, T, 1) readings ~ N(0, 1), targets (bs, T, 1) their running mean."""
    T = int(torch.randint(20, 81, (), generator=gen))
    x = torch.randn(bs, T, 1, generator=gen)
    return x, x.cumsum(1) / torch.arange(1, T + 1).view(1, T, 1)


def pieces(T: int, gen: torch.Generator) -> list[tuple[int, int]]:
    """[b, e) pieces of 1 to 16 steps covering range(T)."""
    bounds, b = [], 0
    while b < T:
        e = min(T, b + int(torch.randint(1, 17, (), generator=gen)))
        bounds.append((b, e))
        b = e
    return bounds


def evaluate(model: nn.Module, gen: torch.Generator, n: int = 20) -> tuple[float, float]:
    """(model mse, mse of predicting 0) over n fresh episodes, each from a fresh state."""
    err = zero = 0.0
    with torch.no_grad():
        for _ in range(n):
            x, y = episode(8, gen)
            out, state = model(x)
            assert int(state["step"][0]) == x.shape[1]  # the count was carried through the episode
            err += F.mse_loss(out, y).item() / n
            zero += y.pow(2).mean().item() / n
    return err, zero


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=150)
    p.add_argument("--bs", type=int, default=16)
    p.add_argument("--k1", type=int, default=8)
    p.add_argument("--k2", type=int, default=16)
    p.add_argument("--n-hidden", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="small tensors: more threads only contend")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = CountingLSTM(args.n_hidden)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    stream = TBPTTStream(model, args.k1, args.k2, loss_fn=lambda out, y: F.mse_loss(out, y, reduction="sum"))
    start = time.perf_counter()
    for i in range(args.episodes):
        x, y = episode(args.bs, gen)
        for b, e in pieces(x.shape[1], gen):
            for _ in stream.feed(x[:, b:e], y[:, b:e]):
                opt.step()
                opt.zero_grad()
        for _ in stream.flush():  # the episode's last, shorter stride
            opt.step()
            opt.zero_grad()
        stream.reset()  # the next episode starts from zeros and a count of 0
        if (i + 1) % max(1, args.episodes // 5) == 0:
            mse, zero = evaluate(model, torch.Generator().manual_seed(1))
            print(f"episode {i + 1:>4}: mse {mse:.4f} (predicting 0: {zero:.4f})  "
                  f"{time.perf_counter() - start:.0f} s")
    mse, zero = evaluate(model, torch.Generator().manual_seed(1))
    return dict(mse=mse, zero_mse=zero)


if __name__ == "__main__":
    main()
