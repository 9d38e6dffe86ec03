"""Training tokens/s per chapter model: looplm's Learner against a bare PyTorch loop.

Both run the same model on the same Human Numbers batches (the chapter's bs,
sl and optimiser; AR/TAR for lm7 in both). The bare loop is the least a
training loop can do: forward, loss, backward, step, detach the state. The
learner adds callbacks, the one-cycle schedule and the progress bookkeeping.

    python benchmarks/train_throughput.py [--epochs 3] [--repeats 3] [--threads N]
                                          [--chapter [--jobs N]] [--fastai-python PATH]

Only training is timed (no validation). Each figure is the best of --repeats.
``--chapter`` also times the whole chapter (seven models, seed 0, the chapter's epochs,
validation included, no run directory) as ``looplm reproduce chapter12`` trains it, and with
``--jobs N`` also N runs at a time (``reproduce --jobs N``). ``--fastai-python PATH`` runs the chapter's fastai
code (benchmarks/fastai_chapter12.py) in that interpreter, after looplm in the same run,
on the same text and thread count, and prints both sides and their ratios.

``--clock cpu`` times with the CPU seconds of the process and its children instead of the
wall clock: with ``--threads 1`` on a shared machine, time spent waiting for a core is
then not counted (fastai's data loaders start worker processes; their time is counted).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from looplm.allocator import keep_freed_memory
from looplm.callbacks import ARTAR
from looplm.data import load_corpus
from looplm.data.human_numbers import human_numbers_tokens
from looplm.learner import Learner, default_adam, param_groups
from looplm.losses import mean_cross_entropy
from looplm.models import build_model
from looplm.reproduce.chapter12 import CHAPTER_RECIPES, reproduce_chapter12
from looplm.state import detach_state

FASTAI_SCRIPT = Path(__file__).with_name("fastai_chapter12.py")


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and its finished children."""
    t = os.times()  # children: finished ones only, in clock ticks; ours: the fine-grained clock
    return time.process_time() + t.children_user + t.children_system


clock = time.perf_counter  # or cpu_seconds (--clock cpu)


def bare_loop(model, batches, epochs: int, lr: float, wd: float, alpha: float, beta: float) -> float:
    opt = default_adam(param_groups(model, wd), lr, wd)
    model.train()
    start = clock()
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
    return clock() - start


def learner_loop(model, train, valid, epochs: int, recipe) -> float:
    learn = Learner(model, train, valid, wd=recipe.wd, log=None, progress=False)
    cbs = [ARTAR(recipe.alpha, recipe.beta)] if recipe.alpha or recipe.beta else []
    learn.validate = lambda data=None: (0.0, 0.0)  # time training only
    start = clock()
    learn.fit_one_cycle(epochs, recipe.lr, wd=recipe.wd, moms=recipe.moms, cbs=cbs)
    return clock() - start


def chapter_seconds(jobs: int) -> tuple[float, dict[str, float]]:
    """Wall time of the chapter's seven runs (seed 0, validation included), ``jobs`` at a time,
    and their final accuracies."""
    start = clock()
    result = reproduce_chapter12([0], device="cpu", log=lambda line: None, progress=False, jobs=jobs)
    return clock() - start, {m.recipe.model: m.curves[0][-1] for m in result.models}


def fastai_side(python: str, args) -> dict:
    """Run benchmarks/fastai_chapter12.py in ``python`` on the same text; its JSON result."""
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(tmp) / "human_numbers.txt"
        text.write_text(" ".join(human_numbers_tokens()), encoding="utf-8")
        cmd = [python, str(FASTAI_SCRIPT), "--text", str(text), "--epochs", str(args.epochs),
               "--repeats", str(args.repeats), "--threads", str(torch.get_num_threads()), "--clock", args.clock]
        if not args.chapter:
            cmd.append("--skip-chapter")
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def load_average() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def throughput(corpus, recipe, args) -> tuple[int, float, float]:
    """Tokens per epoch, and the bare loop's and the learner's best training tokens/s."""
    cfg = recipe.config(0, "cpu")
    spec_layout = build_model(recipe.model, len(corpus.vocab)).layout
    train, valid = corpus.batches(cfg.bs, cfg.sl, spec_layout, group=cfg.group)
    tokens = train.inputs.numel() * args.epochs
    bare, learned = [], []
    for _ in range(args.repeats):  # alternated, so both see the same load
        torch.manual_seed(0)
        model = build_model(recipe.model, len(corpus.vocab), **cfg.model_config)
        bare.append(bare_loop(model, train, args.epochs, recipe.lr, recipe.wd, recipe.alpha, recipe.beta))
        torch.manual_seed(0)
        model = build_model(recipe.model, len(corpus.vocab), **cfg.model_config)
        learned.append(learner_loop(model, train, valid, args.epochs, recipe))
    return train.inputs.numel(), tokens / min(bare), tokens / min(learned)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--chapter", action="store_true", help="also time the whole chapter, seed 0")
    parser.add_argument("--jobs", type=int, default=1,
                        help="with --chapter: also time it with this many runs at once (reproduce --jobs)")
    parser.add_argument("--fastai-python", metavar="PATH", help="an interpreter with fastai: run the peer too")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="cpu: CPU seconds (use with --threads 1)")
    args = parser.parse_args()
    global clock
    clock = cpu_seconds if args.clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    corpus = load_corpus("human-numbers")
    keep_freed_memory()  # the learner does it; the bare loop runs in the same process on the same terms
    print(f"looplm: torch {torch.__version__}, {torch.get_num_threads()} threads, {args.epochs} epochs, "
          f"best of {args.repeats}, {args.clock} clock; {load_average()}")
    print(f"{'model':<6}{'tokens/epoch':>13}{'bare tok/s':>12}{'learner tok/s':>15}{'overhead':>10}")
    ours = {}
    for recipe in CHAPTER_RECIPES:
        n, bare_tps, ours[recipe.model] = throughput(corpus, recipe, args)
        print(f"{recipe.model:<6}{n:>13,}{bare_tps:>12,.0f}{ours[recipe.model]:>15,.0f}{bare_tps / ours[recipe.model] - 1:>10.1%}")
    chapter = {}  # jobs -> seconds
    for jobs in sorted({1, args.jobs}) if args.chapter else ():
        chapter[jobs], finals = chapter_seconds(jobs)
        print(f"looplm chapter (7 models, seed 0, {jobs} at a time): {chapter[jobs]:.1f} s; final accuracy "
              + " ".join(f"{k} {v:.3f}" for k, v in finals.items()) + f"; {load_average()}")
    if not args.fastai_python:
        return
    peer = fastai_side(args.fastai_python, args)
    print(f"fastai {peer['fastai']} on torch {peer['torch']}, {peer['threads']} threads (same run, after looplm); "
          f"{load_average()}")
    for name, tps in peer["train_tokens_per_s"].items():
        print(f"{name}: fastai {tps:,.0f} tok/s, looplm {ours[name]:,.0f} tok/s: looplm {ours[name] / tps:.2f}x")
    for jobs, seconds in chapter.items():
        print(f"chapter, {jobs} at a time: fastai {peer['chapter_seconds']:.1f} s, looplm {seconds:.1f} s: looplm "
              f"{peer['chapter_seconds'] / seconds:.2f}x")
    if chapter:
        print("fastai final accuracy " + " ".join(f"{k} {v:.3f}" for k, v in peer["chapter_accuracy"].items()))


if __name__ == "__main__":
    main()
