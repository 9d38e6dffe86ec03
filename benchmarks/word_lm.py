"""Word-level LSTM: looplm against PyTorch's word_language_model example, same tokens, same CPU.

    python benchmarks/word_lm.py --peer DIR [--epochs 1] [--repeats 2] [--recipe] [--work DIR]

DIR is a checkout of pytorch/examples' ``word_language_model`` (outside this repository:
it is run, never copied). Both sides read one token stream: looplm tokenises the text
(``word:9998``: the 9,998 most frequent words of the training split, plus ``<unk>`` and
``<sep>``, 10,000 tokens), and the peer gets that stream written back as words
(``train.txt``/``valid.txt``/``test.txt``, rare words as ``<unk>``; its own ``Dictionary``
then adds ``<eos>`` at the end of each file). Each side trains in its own process, one
after the other, alternated ``--repeats`` times, with the same thread count; each epoch's
seconds include its validation (the peer's ``time:``, looplm's ``metrics.csv``). Each run's
CPU seconds (the whole process: start-up, data, training, saving) are printed too: with
``OMP_NUM_THREADS=1`` on a shared machine they do not count time spent waiting for a core.

The model is the peer's README configuration: 2-layer LSTM, 200 embedding and hidden units,
tied, dropout 0.2, bs 20, bptt 35, fp32; the peer steps SGD (lr 20, clip 0.25), looplm its
default AdamW with one-cycle (clip 0.25). ``--recipe`` adds looplm's word-level recipe (see
the README) and prints each side's valid loss after ``--epochs``.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from looplm.data.text import load_text_corpus

DATA = Path("../shared/data/tinyshakespeare.txt")  # as the README: run from the repository's root
TOKENIZER = "word:9998"
MODEL = ["--model", "lstm", "--set", "emb_sz=200", "--set", "n_hidden=200", "--set", "n_layers=2",
         "--set", "p=0.2", "--set", "tie_weights=true", "--bs", "20", "--sl", "35", "--seed", "0"]
SAME = ["--lr", "3e-3", "--clip", "0.25"]                  # the speed comparison
RECIPE = ["--lr", "5e-3", "--clip", "0.25", "--wd", "0.1", "--alpha", "2", "--beta", "1",
          "--moms", "0.8", "0.7", "0.8"]


def child_cpu() -> float:
    """CPU seconds of this process's finished children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def write_peer_corpus(data: Path, out: Path) -> tuple[int, int, int]:
    """looplm's token stream of ``data`` as the peer's three files; (train, valid, vocab) sizes."""
    corpus = load_text_corpus(data, TOKENIZER)
    words = corpus.tokenizer.vocab.itos
    out.mkdir(parents=True, exist_ok=True)
    for name, ids in (("train", corpus.tokens), ("valid", corpus.valid_tokens), ("test", corpus.valid_tokens)):
        (out / f"{name}.txt").write_text(" ".join(words[int(i)] for i in ids.numpy()) + "\n", encoding="utf-8")
    return len(corpus.tokens), len(corpus.valid_tokens), len(words)


def run_peer(python: str, peer: Path, corpus: Path, epochs: int, work: Path) -> tuple[list[float], float]:
    """Seconds of each of the peer's epochs (train + validation), and its last valid loss."""
    cmd = [python, "main.py", "--data", str(corpus), "--epochs", str(epochs), "--tied",
           "--save", str(work / "peer.pt"), "--log-interval", "100000"]
    out = subprocess.run(cmd, cwd=peer, check=True, capture_output=True, text=True).stdout
    ends = re.findall(r"end of epoch\s+\d+ \| time:\s*([\d.]+)s \| valid loss\s*([\d.]+)", out)
    return [float(t) for t, _ in ends], float(ends[-1][1])


def run_looplm(data: Path, epochs: int, work: Path, settings: list[str]) -> tuple[list[float], float]:
    """Seconds of each looplm epoch (train + validation), and its last valid loss."""
    out = work / f"looplm-{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "looplm", "train", "--data", str(data), "--tokenizer", TOKENIZER, *MODEL,
           *settings, "--epochs", str(epochs), "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    with open(out / "metrics.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [float(r["seconds"]) for r in rows], float(rows[-1]["valid_loss"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", type=Path, required=True, help="pytorch/examples' word_language_model folder")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--recipe", action="store_true", help="also run looplm's word-level recipe")
    parser.add_argument("--work", type=Path, default=None, help="where the peer corpus and runs go (default: a temp dir)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="word_lm_"))
    n_train, n_valid, n_vocab = write_peer_corpus(args.data, work / "corpus")
    print(f"{args.data.name}: {n_train:,} train and {n_valid:,} valid tokens, vocab {n_vocab:,} ({TOKENIZER}); "
          f"threads {os.environ.get('OMP_NUM_THREADS', 'default')}; {args.epochs} epochs per run; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    sides = {"peer (SGD lr 20)": lambda: run_peer(sys.executable, args.peer, work / "corpus", args.epochs, work),
             "looplm (same model)": lambda: run_looplm(args.data, args.epochs, work, SAME)}
    if args.recipe:
        sides["looplm recipe"] = lambda: run_looplm(args.data, args.epochs, work, RECIPE)
    results: dict[str, list[tuple[list[float], float, float]]] = {k: [] for k in sides}
    for _ in range(args.repeats):
        for name, side in sides.items():
            cpu = child_cpu()
            seconds, loss = side()
            results[name].append((seconds, loss, child_cpu() - cpu))
    peer_runs = results["peer (SGD lr 20)"]
    peer_best, peer_cpu = min(min(r[0]) for r in peer_runs), min(r[2] for r in peer_runs)
    for name, runs in results.items():
        best, cpu = min(min(r[0]) for r in runs), min(r[2] for r in runs)
        losses = ", ".join(f"{r[1]:.4f}" for r in runs)
        print(f"{name:<20} best epoch {best:7.1f} s wall ({best / peer_best:.2f}x the peer's), run {cpu:7.1f} "
              f"CPU s ({cpu / peer_cpu:.2f}x); valid loss after {args.epochs} epochs: {losses} "
              f"(ppl {math.exp(runs[-1][1]):.1f})")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
