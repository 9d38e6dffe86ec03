"""Training tokens/s per chapter model: looplm's Learner against a bare PyTorch loop.

Both run the same model on the same Human Numbers batches (the chapter's bs,
sl and optimiser; AR/TAR for lm7 in both). The bare loop is the least a
training loop can do: forward, loss, backward, step, detach the state. The
learner adds callbacks, the one-cycle schedule and the progress bookkeeping.

    python benchmarks/train_throughput.py [--epochs 3] [--repeats 3] [--threads N]

Only training is timed (no validation). Each figure is the best of --repeats.
"""

from __future__ import annotations

import argparse
import time

import torch

from looplm.callbacks import ARTAR
from looplm.data import load_corpus
from looplm.learner import Learner, default_adam, param_groups
from looplm.losses import mean_cross_entropy
from looplm.models import build_model
from looplm.reproduce.chapter12 import CHAPTER_RECIPES
from looplm.state import detach_state

FASTAI_TOKENS_PER_S = {"lm4": 58_700, "lm7": 33_800}  # fastai 2.8.12, chapter code, same 2-core CPU


def bare_loop(model, batches, epochs: int, lr: float, wd: float, alpha: float, beta: float) -> float:
    opt = default_adam(param_groups(model, wd), lr, wd)
    model.train()
    start = time.perf_counter()
    for _ in range(epochs):
        state = None
        for x, y in batches:
            if alpha or beta:
                logits, state, (raw, dropped) = model(x, state, return_activations=True)
                loss = mean_cross_entropy(logits, y)
                loss = loss + alpha * dropped.pow(2).mean() + beta * (raw[:, 1:] - raw[:, :-1]).pow(2).mean()
            else:
                logits, state = model(x, state)
                loss = mean_cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            state = detach_state(state)
    return time.perf_counter() - start


def learner_loop(model, train, valid, epochs: int, recipe) -> float:
    learn = Learner(model, train, valid, wd=recipe.wd, log=None, progress=False)
    cbs = [ARTAR(recipe.alpha, recipe.beta)] if recipe.alpha or recipe.beta else []
    learn.validate = lambda data=None: (0.0, 0.0)  # time training only
    start = time.perf_counter()
    learn.fit_one_cycle(epochs, recipe.lr, wd=recipe.wd, moms=recipe.moms, cbs=cbs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    corpus = load_corpus("human-numbers")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.epochs} epochs, best of {args.repeats}")
    print(f"{'model':<6}{'tokens/epoch':>13}{'bare tok/s':>12}{'learner tok/s':>15}{'overhead':>10}{'vs fastai':>11}")
    for recipe in CHAPTER_RECIPES:
        cfg = recipe.config(0, "cpu")
        spec_layout = build_model(recipe.model, len(corpus.vocab)).layout
        train, valid = corpus.batches(cfg.bs, cfg.sl, spec_layout, group=cfg.group)
        tokens = train.inputs.numel() * args.epochs
        bare, learned = [], []
        for _ in range(args.repeats):
            torch.manual_seed(0)
            model = build_model(recipe.model, len(corpus.vocab), **cfg.model_config)
            bare.append(bare_loop(model, train, args.epochs, recipe.lr, recipe.wd, recipe.alpha, recipe.beta))
            torch.manual_seed(0)
            model = build_model(recipe.model, len(corpus.vocab), **cfg.model_config)
            learned.append(learner_loop(model, train, valid, args.epochs, recipe))
        bare_tps, learner_tps = tokens / min(bare), tokens / min(learned)
        fastai = FASTAI_TOKENS_PER_S.get(recipe.model)
        versus = f"{learner_tps / fastai:.2f}x" if fastai else ""
        print(f"{recipe.model:<6}{train.inputs.numel():>13,}{bare_tps:>12,.0f}{learner_tps:>15,.0f}"
              f"{bare_tps / learner_tps - 1:>10.1%}{versus:>11}")


if __name__ == "__main__":
    main()
