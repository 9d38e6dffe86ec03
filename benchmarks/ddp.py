"""Data-parallel training throughput: tokens/s with 1 and 2 ranks (gloo, CPU).

    python benchmarks/ddp.py [--epochs 2] [--tokens 40000] [--models lm6,lstm-512]

For each model it times the training part of ``looplm train`` (validation left out) in three
layouts of the same global batch (bs 64 x sl 16 on Human Numbers):

    1 rank  x 1 thread     the baseline
    1 rank  x 2 threads    the other way to use two cores: intra-op parallelism
    2 ranks x 1 thread     torchrun, each rank bs/2 rows, gradients all-reduced every step

tokens/s counts the global batch (every rank's rows). "all-reduce" is the share of a rank's
time spent averaging gradients (GradSync). The ranks are started by torchrun, exactly as
``looplm train --nproc 2`` starts them; the worker below is the same code path as ``train``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time

MODELS = {
    "lm6": ("lm6", {}),  # the chapter's 2-layer LSTM, 64 hidden units
    "lstm-512": ("lstm", {"n_hidden": 512, "emb_sz": 64, "n_layers": 2, "p": 0.0}),
}
LAYOUTS = ((1, 1), (1, 2), (2, 1))  # (ranks, threads per rank)


def worker(args) -> None:
    """One rank (or the only process): train ``--epochs`` epochs, rank 0 prints a JSON line."""
    import torch

    from looplm import distributed
    from looplm.data import load_corpus
    from looplm.training import TrainConfig, build_learner

    torch.set_num_threads(args.threads)
    model, settings = MODELS[args.model]
    cfg = TrainConfig(model=model, model_config=settings, epochs=args.epochs, bs=64, sl=16, lr=3e-3, device="cpu")
    dist = distributed.setup(cfg)
    corpus = load_corpus("human-numbers")
    corpus = dataclasses.replace(corpus, tokens=corpus.tokens[: args.tokens])
    learn = build_learner(cfg, corpus, log=None, progress=False, dist=dist)
    learn.validate = lambda data=None: (0.0, 0.0)  # time training only
    synced = [0.0]
    sync = dist.sync_gradients

    def timed(params):
        start = time.perf_counter()
        sync(params)
        synced[0] += time.perf_counter() - start

    dist.sync_gradients = timed
    learn.fit_one_cycle(1, cfg.lr)  # warm-up (allocator, first all-reduce)
    synced[0] = 0.0
    start = time.perf_counter()
    learn.fit_one_cycle(args.epochs, cfg.lr)
    seconds = time.perf_counter() - start
    tokens = args.epochs * len(learn.train_data) * learn.train_data.bs * cfg.sl * dist.world_size
    if dist.is_main:
        print(json.dumps({"tokens_per_s": tokens / seconds, "sync_share": synced[0] / seconds}), flush=True)
    dist.close()


def measure(args, model: str, ranks: int, threads: int) -> dict:
    own = [__file__, "--worker", "--model", model, "--epochs", str(args.epochs), "--tokens", str(args.tokens),
           "--threads", str(threads)]
    if ranks == 1:
        cmd = [sys.executable, *own]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}", *own]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(cmd, env=env, check=True, text=True, stdout=subprocess.PIPE).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--tokens", type=int, default=40_000, help="Human Numbers tokens kept (train is 80%%)")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--model", default="lm6", help=argparse.SUPPRESS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    print(f"{os.cpu_count()} CPU cores (load average {os.getloadavg()[0]:.1f} at start); global batch 64 x 16 "
          f"tokens; {args.epochs} timed epochs after 1 warm-up")
    print(f"{'model':<10}{'layout':<22}{'tokens/s':>10}{'speedup':>9}{'all-reduce':>12}")
    for model in args.models.split(","):
        base = None
        for ranks, threads in LAYOUTS:
            r = measure(args, model, ranks, threads)
            base = base or r["tokens_per_s"]
            layout = f"{ranks} rank{'s' if ranks > 1 else ''} x {threads} thread{'s' if threads > 1 else ''}"
            share = f"{100 * r['sync_share']:.1f}%" if ranks > 1 else "-"
            print(f"{model:<10}{layout:<22}{r['tokens_per_s']:>10,.0f}{r['tokens_per_s'] / base:>8.2f}x{share:>12}",
                  flush=True)
    print("On 2 cores the 2 ranks share the machine with each other (1 intra-op thread each): the speedup is\n"
          "what data parallelism buys over one process, against 1 process x 2 threads as the alternative.")


if __name__ == "__main__":
    main()
