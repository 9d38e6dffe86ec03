"""TBPTT(k1, k2) inside a PyTorch Lightning LightningModule, with manual optimisation.

    pip install -e ".[lightning]"             # lightning==2.6.6, torch==2.13.0 kept
    python examples/lightning_tbptt.py        # the episodes of dict_state_episodes.py

Lightning 2.x has no TBPTT of its own (``truncated_bptt_steps`` went in 2.0); its
docs suggest splitting each batch along time inside ``training_step``, which
needs the whole window in the batch and gives k1 = k2. Here each batch is one
*piece* of an episode (a few steps), the module owns a :class:`TBPTTStream`,
and windows reach back across batches::

    DataLoader  piece, piece, piece, (end of episode) piece, ...
    training_step: for step in stream.feed(x, y): opt.step()     # 0, 1 or more updates
                   at the end of an episode: stream.flush(), stream.reset()

The stream calls ``backward`` itself, so Lightning's loss scaling is not applied:
use ``precision="32-true"`` or ``"bf16-mixed"``, not ``"16-mixed"``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, IterableDataset

from looplm.tbptt import TBPTTStream

sys.path.insert(0, str(Path(__file__).parent))
from dict_state_episodes import CountingLSTM, episode, evaluate, pieces  # noqa: E402  (the same task)


class EpisodePieces(IterableDataset):
    """Yields (x, y, last): the pieces of ``n`` episodes in order; ``last`` ends an episode."""

    def __init__(self, n: int, bs: int, seed: int):
        self.n, self.bs, self.seed = n, bs, seed

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed)
        for _ in range(self.n):
            x, y = episode(self.bs, gen)
            bounds = pieces(x.shape[1], gen)
            for b, e in bounds:
                yield x[:, b:e], y[:, b:e], e == bounds[-1][1]


class TBPTTModule(L.LightningModule):
    def __init__(self, k1: int = 8, k2: int = 16, n_hidden: int = 32, lr: float = 1e-2):
        super().__init__()
        self.automatic_optimization = False  # the stream decides when an update is due
        self.model = CountingLSTM(n_hidden)
        self.lr = lr
        self.stream = TBPTTStream(self.model, k1, k2,
                                  loss_fn=lambda out, y: F.mse_loss(out, y, reduction="sum"))

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.lr)

    def training_step(self, batch, batch_idx):
        x, y, last = batch
        opt = self.optimizers()
        updates = list(self._updates(self.stream.feed(x, y), opt))
        if last:  # the episode's last, shorter stride, then a fresh state for the next one
            updates += self._updates(self.stream.flush(), opt)
            self.stream.reset()
        if updates:
            self.log("train_mse", torch.stack(updates).mean(), prog_bar=True)

    @staticmethod
    def _updates(steps, opt):
        for step in steps:  # the gradients are in .grad when the stream yields
            opt.step()
            opt.zero_grad()
            yield step.loss


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=150)
    p.add_argument("--bs", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="small tensors: more threads only contend")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    module = TBPTTModule()
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", precision="32-true", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, DataLoader(EpisodePieces(args.episodes, args.bs, args.seed), batch_size=None))
    mse, zero = evaluate(module.model, torch.Generator().manual_seed(1))
    print(f"after {args.episodes} episodes: mse {mse:.4f} (predicting 0: {zero:.4f})")
    return dict(mse=mse, zero_mse=zero)


if __name__ == "__main__":
    main()
