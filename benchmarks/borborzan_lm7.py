"""LModel7 on the bor-bor-zan notebook's games: looplm beside fastai running the notebook's
own cell, on the same token stream, with and without AR/TAR.

    python benchmarks/borborzan_lm7.py [--seeds 0,1,2] [--fastai-python PATH ...] [--threads 1]

The notebook's ``TextLearner(alpha=2, beta=1)`` trained without AR and TAR: fastai up to
2.8.3 built TextLearner's callbacks without them; 2.8.4 applies them. For each seed, one
after the other in this run: looplm's LModel7 as the notebook ran (``looplm reproduce
borborzan``'s run: 5 epochs one-cycle at 1e-2, wd 0.1, dropout 0.4, moms 0.8/0.7/0.8), the
same with AR 2 and TAR 1 as the cell is written, and the notebook's cell in each fastai given
by ``--fastai-python`` (repeatable: e.g. one venv with fastai 2.8.2, one with 2.8.12;
benchmarks/fastai_borborzan.py). Prints each final valid loss and how far above the exact
optimum of those valid targets it is.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from looplm.reproduce.borborzan import NOTEBOOK_RUNS, limits_of, notebook_corpus
from looplm.training import train

PEER = Path(__file__).with_name("fastai_borborzan.py")
GAMES = 100_000


def looplm_side(run, seed: int, corpus) -> list[float]:
    trained = train(run.config(seed, "cpu", GAMES), corpus=corpus, log=None, progress=False)
    return [m.valid_loss for m in trained.learner.history]


def fastai_side(python: str, folder: Path, seed: int, threads: int) -> list[float]:
    out = subprocess.run([python, str(PEER), "--train", str(folder / "train.npy"), "--valid",
                          str(folder / "valid.npy"), "--seed", str(seed), "--threads", str(threads)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["valid_loss"]


def fastai_version(python: str) -> str:
    return subprocess.run([python, "-c", "import fastai; print(fastai.__version__)"], check=True,
                          capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--fastai-python", metavar="PATH", action="append", default=[],
                        help="an interpreter with fastai: run the notebook's cell in it too (repeatable)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    notebook = next(r for r in NOTEBOOK_RUNS if r.model == "lm7")
    sides = {"looplm, as the notebook ran": notebook,
             "looplm, AR 2 and TAR 1": replace(notebook, alpha=2.0, beta=1.0)}
    peers = {f"fastai {fastai_version(python)}, the cell": python for python in args.fastai_python}
    corpus = notebook_corpus(GAMES)
    train_ids, valid_ids = corpus.split(notebook.sl)
    optimum = limits_of(valid_ids.numpy(), (notebook,), 0)[0]["lm7"]["optimal_loss"]
    finals: dict[str, list[float]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        np.save(folder / "train.npy", train_ids.numpy().astype(np.int64))
        np.save(folder / "valid.npy", valid_ids.numpy().astype(np.int64))
        finals.update({name: [] for name in peers})
        for seed in seeds:
            for name in finals:
                start = time.perf_counter()
                curve = (fastai_side(peers[name], folder, seed, args.threads) if name in peers
                         else looplm_side(sides[name], seed, corpus))
                finals[name].append(curve[-1])
                print(f"seed {seed}  {name:<34} {' '.join(f'{v:.4f}' for v in curve)}  "
                      f"{time.perf_counter() - start:5.0f} s", flush=True)
    print(f"\nexact optimum of the valid targets: {optimum:.4f} nats/token; the notebook printed 0.5682")
    print(f"{'':<34} {'final valid loss':>18} {'above the optimum':>18}")
    for name, values in finals.items():
        mean = statistics.fmean(values)
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{name:<34} {mean:>10.4f} ± {std:.4f} {100 * (mean / optimum - 1):>17.2f}%")
    print(f"torch {torch.__version__}, {args.threads} thread(s), python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
