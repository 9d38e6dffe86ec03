"""Word-level LSTM: looplm against PyTorch's word_language_model example, same tokens, same CPU.

    python benchmarks/word_lm.py --peer DIR [--epochs 5] [--threads 1] [--speed-epochs 2]
                                 [--repeats 1] [--only speed|recipe] [--work DIR]

DIR is a checkout of pytorch/examples' ``word_language_model`` (outside this repository:
it is run unmodified, never copied). Both sides read one token stream: looplm tokenises the
text (``word:9998``: the 9,998 most frequent words of the training split, plus ``<unk>`` and
``<sep>``, 10,000 tokens), and the peer gets that stream written back as words
(``train.txt``/``valid.txt``/``test.txt``, rare words as ``<unk>``; its own ``Dictionary``
then adds ``<eos>`` at the end of each file). Every run is a process of its own, one after
the other in this one invocation, each with ``OMP_NUM_THREADS=--threads``.

Two comparisons:

speed   the peer's README configuration (2-layer LSTM, 200 embedding and hidden units, tied,
        dropout 0.2, bs 20, bptt 35, fp32, SGD lr 20, clip 0.25) against looplm training the
        same model (fp32, its AdamW one-cycle, clip 0.25), ``--speed-epochs`` epochs each,
        alternated ``--repeats`` times: seconds per epoch, train and validation (each side's
        own clock: the peer's ``time:``, looplm's ``metrics.csv``), and CPU seconds per epoch
        (the process's CPU time between two epoch ends, from a hook that only reads the
        clock: with one thread on a shared CPU this does not count time spent waiting for a
        core, so it compares under any load).
recipe  the peer for ``--epochs`` epochs, then looplm's word-level recipe (RECIPE, the README's
        command) for as many epochs, then the recipe with ``--time-budget`` set to the peer's
        training time (the sum of its epochs' seconds: looplm's budget also has to pay for
        its start-up, tokenising and checkpoints). Valid loss per epoch per side, and the
        comparison at equal epochs and at equal wall time.

The peer prints its valid perplexity with two decimals: its valid loss is taken as
ln(perplexity), which is exact to about 3e-5.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from looplm.data.text import load_text_corpus

DATA = Path("../shared/data/tinyshakespeare.txt")  # as the README: run from the repository's root
TOKENIZER = "word:9998"
PEER_MODEL = ["--set", "emb_sz=200", "--set", "n_hidden=200", "--set", "n_layers=2", "--set", "tie_weights=true"]
MODEL = ["--model", "lstm", *PEER_MODEL, "--set", "p=0.2", "--bs", "20", "--sl", "35", "--seed", "0",
         "--precision", "fp32"]
SAME = [*MODEL, "--lr", "3e-3", "--clip", "0.25"]  # the speed comparison: the peer's model, looplm's loop
RECIPE = ["--model", "lstm", *PEER_MODEL, "--set", "p=0.2", "--bs", "20", "--sl", "35", "--seed", "0",
          "--lr", "2e-2", "--clip", "0.25", "--wd", "0.1", "--alpha", "2", "--beta", "1",
          "--moms", "0.8", "0.7", "0.8", "--precision", "bf16"]  # the README's word-level command

# Hooks run in the child before the program: they only read the process's CPU clock at each
# epoch's end and print it on standard error; the programs themselves run unchanged.
PEER_HOOK = """
import builtins, runpy, sys, time
_print = builtins.print
def _hooked(*args, **kwargs):
    if args and isinstance(args[0], str) and "end of epoch" in args[0]:
        _print(f"CPU {time.process_time():.3f}", file=sys.stderr, flush=True)
    _print(*args, **kwargs)
builtins.print = _hooked
sys.argv = ["main.py", *sys.argv[1:]]
runpy.run_path("main.py", run_name="__main__")
"""
LOOPLM_HOOK = """
import sys, time
from looplm.learner import Learner
def _say(self, line, _say=Learner._say):
    if self.history and line.startswith(str(self.history[-1].epoch)):
        print(f"CPU {time.process_time():.3f}", file=sys.stderr, flush=True)
    _say(self, line)
Learner._say = _say
from looplm.cli.main import main
sys.argv = ["looplm", *sys.argv[1:]]
sys.exit(main())
"""


@dataclass
class Run:
    """One side's run: per epoch the seconds (its own clock), CPU seconds and valid loss."""

    name: str
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    valid: list[float] = field(default_factory=list)
    wall: float = 0.0  # the whole process, start-up to exit
    note: str = ""

    @property
    def train_seconds(self) -> float:
        return sum(self.seconds)


def cpu_marks(stderr: str) -> list[float]:
    """CPU seconds spent in each epoch, from the hook's marks (the first one includes start-up)."""
    marks = [float(m) for m in re.findall(r"^CPU ([\d.]+)$", stderr, flags=re.M)]
    return [b - a for a, b in zip([0.0, *marks], marks)]


def write_peer_corpus(data: Path, out: Path) -> tuple[int, int, int]:
    """looplm's token stream of ``data`` as the peer's three files; (train, valid, vocab) sizes."""
    corpus = load_text_corpus(data, TOKENIZER)
    words = corpus.tokenizer.vocab.itos
    out.mkdir(parents=True, exist_ok=True)
    for name, ids in (("train", corpus.tokens), ("valid", corpus.valid_tokens), ("test", corpus.valid_tokens)):
        (out / f"{name}.txt").write_text(" ".join(words[int(i)] for i in ids.numpy()) + "\n", encoding="utf-8")
    return len(corpus.tokens), len(corpus.valid_tokens), len(words)


def child(cmd: list[str], cwd: Path | None, threads: int) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc, wall


def run_peer(peer: Path, corpus: Path, epochs: int, work: Path, threads: int) -> Run:
    cmd = [sys.executable, "-c", PEER_HOOK, "--data", str(corpus), "--epochs", str(epochs), "--tied",
           "--save", str(work / "peer.pt"), "--log-interval", "100000"]
    proc, wall = child(cmd, peer, threads)
    ends = re.findall(r"end of epoch\s+\d+ \| time:\s*([\d.]+)s \| valid loss\s*[\d.]+ \| valid ppl\s*([\d.]+)",
                      proc.stdout)
    return Run("peer", [float(t) for t, _ in ends], cpu_marks(proc.stderr), [math.log(float(p)) for _, p in ends],
               wall)


def run_looplm(name: str, data: Path, epochs: int, work: Path, threads: int, settings: list[str],
               budget_minutes: float | None = None) -> Run:
    out = work / f"looplm-{time.monotonic_ns()}"
    budget = [] if budget_minutes is None else ["--time-budget", f"{budget_minutes:.4f}"]
    cmd = [sys.executable, "-c", LOOPLM_HOOK, "train", "--data", str(data), "--tokenizer", TOKENIZER, *settings,
           "--epochs", str(epochs), *budget, "--out", str(out)]
    proc, wall = child(cmd, None, threads)
    with open(out / "metrics.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    plan = re.search(r"time budget .*", proc.stdout)
    return Run(name, [float(r["seconds"]) for r in rows], cpu_marks(proc.stderr),
               [float(r["valid_loss"]) for r in rows], wall, plan.group(0) if plan else "")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def show(run: Run) -> None:
    print(f"  {run.name}: {len(run.seconds)} epochs, {run.train_seconds:.1f} s training (train + validation), "
          f"{run.wall:.1f} s wall for the whole process; load average {load()}")
    print(f"    seconds per epoch  {' '.join(f'{s:7.1f}' for s in run.seconds)}")
    print(f"    CPU s per epoch    {' '.join(f'{s:7.1f}' for s in run.cpu)}  (the first includes start-up)")
    print(f"    valid loss         {' '.join(f'{v:7.4f}' for v in run.valid)}")
    if run.note:
        print(f"    {run.note}")


def speed(args, work: Path) -> None:
    print(f"\n== speed: the peer's model and batches, {args.speed_epochs} epochs per run, fp32 ==")
    peers, ours = [], []
    for _ in range(args.repeats):
        peers.append(run_peer(args.peer, work / "corpus", args.speed_epochs, work, args.threads))
        show(peers[-1])
        ours.append(run_looplm("looplm (same model, AdamW)", args.data, args.speed_epochs, work, args.threads, SAME))
        show(ours[-1])
    later = slice(1, None) if args.speed_epochs > 1 else slice(None)  # epochs without start-up
    for what, get in (("seconds per epoch", lambda r: r.seconds[later]), ("CPU s per epoch", lambda r: r.cpu[later])):
        p = min(x for r in peers for x in get(r))
        o = min(x for r in ours for x in get(r))
        print(f"  best {what}: peer {p:.1f}, looplm {o:.1f}: looplm takes {o / p:.2f}x the peer's time")


def loss_at(run: Run, t: float) -> float | None:
    """The run's latest valid loss ``t`` seconds into its training (None before its first epoch ends)."""
    ends = [sum(run.seconds[: i + 1]) for i in range(len(run.seconds))]
    done = [v for end, v in zip(ends, run.valid) if end <= t]
    return done[-1] if done else None


def at_equal_times(peer: Run, ours: Run) -> None:
    """Both logs read at each moment one of them finished an epoch: the valid loss each had then."""
    times = sorted({sum(r.seconds[: i + 1]) for r in (peer, ours) for i in range(len(r.seconds))})
    cells = []
    for t in times:
        p, o = loss_at(peer, t), loss_at(ours, t)
        cells.append(f"{t:.0f} s: peer {'-' if p is None else f'{p:.4f}'}, looplm {'-' if o is None else f'{o:.4f}'}")
    print("  at equal elapsed training time (both logs): " + "; ".join(cells))


def recipe(args, work: Path) -> None:
    print(f"\n== recipe: {args.epochs} epochs, and the same wall time ==")
    peer = run_peer(args.peer, work / "corpus", args.epochs, work, args.threads)
    show(peer)
    ours = run_looplm("looplm recipe", args.data, args.epochs, work, args.threads, RECIPE)
    show(ours)
    budget = run_looplm("looplm recipe, --time-budget = the peer's training time", args.data, 100, work,
                        args.threads, RECIPE, peer.train_seconds / 60)
    show(budget)
    print(f"  equal epochs ({args.epochs}): peer valid loss {peer.valid[-1]:.4f} (ppl {math.exp(peer.valid[-1]):.1f}), "
          f"looplm {ours.valid[-1]:.4f} (ppl {math.exp(ours.valid[-1]):.1f}): "
          f"{'looplm' if ours.valid[-1] < peer.valid[-1] else 'the peer'} is better by "
          f"{abs(ours.valid[-1] - peer.valid[-1]):.4f}")
    at_equal_times(peer, ours)
    print(f"  --time-budget = the peer's {peer.train_seconds:.0f} s of training (looplm's whole process took "
          f"{budget.wall:.0f} s: more means the load rose after its warm-up): peer {peer.valid[-1]:.4f}, looplm {budget.valid[-1]:.4f}: "
          f"{'looplm' if budget.valid[-1] < peer.valid[-1] else 'the peer'} is better by "
          f"{abs(budget.valid[-1] - peer.valid[-1]):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", type=Path, required=True, help="pytorch/examples' word_language_model folder")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--epochs", type=int, default=5, help="recipe: epochs of each side")
    parser.add_argument("--speed-epochs", type=int, default=2, help="speed: epochs of each run")
    parser.add_argument("--repeats", type=int, default=1, help="speed: runs of each side, alternated")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every run")
    parser.add_argument("--only", choices=("speed", "recipe"), default=None)
    parser.add_argument("--work", type=Path, default=None, help="where the peer corpus and runs go (default: a temp dir)")
    args = parser.parse_args()
    args.peer, args.data = args.peer.resolve(), args.data.resolve()
    work = (args.work or Path(tempfile.mkdtemp(prefix="word_lm_"))).resolve()
    n_train, n_valid, n_vocab = write_peer_corpus(args.data, work / "corpus")
    print(f"{args.data.name}: {n_train:,} train and {n_valid:,} valid tokens, vocab {n_vocab:,} ({TOKENIZER}); "
          f"{args.threads} thread(s) per run; load average {load()}")
    if args.only in (None, "speed"):
        speed(args, work)
    if args.only in (None, "recipe"):
        recipe(args, work)


if __name__ == "__main__":
    main()
