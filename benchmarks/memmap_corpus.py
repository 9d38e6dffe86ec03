"""A 10^8-token text corpus trains from its memmap with resident memory under 2 GiB.

    python benchmarks/memmap_corpus.py [--tokens 100_000_000] [--batches 300] [--workdir DIR] [--threads N]

1. writes a seeded synthetic corpus: a folder of 10 .txt documents, one character = one
   token (random lowercase words, spaces, newlines; 10^8 bytes in all);
2. loads it with the char tokenizer: read in 1 MiB blocks, tokenised, written to the uint16
   memmap cache (timed), then loaded again from the cache (timed);
3. trains a small lstm for --batches batches of the stream (tokens/s), and reads every
   train batch once (every page of the memmap is touched);
4. prints the peak resident memory of the whole process (ru_maxrss) and what it is made of.

As an int64 tensor the stream alone would take 800 MB; here it is 200 MB of file pages that
the kernel maps in and may drop again.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

N_DOCS = 10
ALPHABET = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz \n", dtype=np.uint8)
WEIGHTS = np.array([8.2, 1.5, 2.8, 4.3, 12.7, 2.2, 2.0, 6.1, 7.0, 0.2, 0.8, 4.0, 2.4, 6.7, 7.5, 1.9, 0.1,
                    6.0, 6.3, 9.1, 2.8, 1.0, 2.4, 0.2, 2.0, 0.1, 18.0, 2.0])


def write_corpus(folder: Path, n_bytes: int, seed: int = 0) -> None:
    """N_DOCS documents of English-like letter frequencies, n_bytes in all (ASCII)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    p = WEIGHTS / WEIGHTS.sum()
    per_doc, block = n_bytes // N_DOCS, 1 << 22
    for d in range(N_DOCS):
        path = folder / f"doc{d:02d}.txt"
        if path.is_file() and path.stat().st_size == per_doc:
            continue
        with open(path, "wb") as f:
            left = per_doc
            while left:
                n = min(block, left)
                f.write(ALPHABET[rng.choice(len(ALPHABET), n, p=p)].tobytes())
                left -= n


def rss() -> dict[str, float]:
    """Peak and current resident memory in MiB (current split into file pages and anonymous)."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    kib = lambda key: int(status.get(key, "0 kB").split()[0]) / 1024  # noqa: E731
    return {"peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "now": kib("VmRSS"), "file": kib("RssFile"), "anon": kib("RssAnon")}


def fmt(mem: dict[str, float]) -> str:
    return f"peak {mem['peak']:,.0f} MiB (now {mem['now']:,.0f}: file {mem['file']:,.0f}, anon {mem['anon']:,.0f})"


def time_training(corpus, bs: int, sl: int, batches: int):
    """Train a 1x128 LSTM for ``batches`` batches read from the memmap; the train batches."""
    from looplm.callbacks import Callback, CancelFit
    from looplm.learner import Learner
    from looplm.models import build_model

    class StopAfter(Callback):
        def after_batch(self, learn) -> None:
            if learn.train_iter >= batches:
                raise CancelFit

    train, valid = corpus.batches(bs, sl, "every")
    model = build_model("lstm", len(corpus.vocab), emb_sz=16, n_hidden=128, n_layers=1, p=0.0)
    learn = Learner(model, train, valid, log=None, progress=False)
    t = time.perf_counter()
    learn.fit_one_cycle(1, 3e-3, cbs=[StopAfter()])
    seconds = time.perf_counter() - t
    n = batches * bs * sl
    print(f"train:     lstm 1x128, {batches} batches of {bs}x{sl} ({n:,} tokens) in {seconds:.1f} s: "
          f"{n / seconds:,.0f} tokens/s")
    print(f"memory:    {fmt(rss())}")
    return train


def time_reading(train, bs: int, sl: int) -> None:
    """Read every train batch (every page of the memmap) as int64."""
    t = time.perf_counter()
    total = 0
    for x, y in train:
        total += int(y[:, -1].sum())
    seconds = time.perf_counter() - t
    print(f"read all:  {len(train):,} train batches as int64 in {seconds:.1f} s "
          f"({len(train) * bs * sl / seconds / 1e6:.1f} M tokens/s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=100_000_000)
    ap.add_argument("--batches", type=int, default=300, help="training batches timed")
    ap.add_argument("--bs", type=int, default=128)
    ap.add_argument("--sl", type=int, default=64)
    ap.add_argument("--workdir", help="keep the corpus and cache here (default: a temporary folder, removed)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="looplm-memmap-"))
    os.environ["LOOPLM_CACHE"] = str(work / "cache")
    from looplm.data.text import load_text_corpus  # after LOOPLM_CACHE is set

    try:
        t = time.perf_counter()
        write_corpus(work / "corpus", args.tokens)
        print(f"corpus:    {args.tokens:,} bytes in {N_DOCS} documents, written in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        corpus = load_text_corpus(work / "corpus", tokenizer="char")
        first = time.perf_counter() - t
        t = time.perf_counter()
        corpus = load_text_corpus(work / "corpus", tokenizer="char")
        print(f"tokenise:  {first:.1f} s ({args.tokens / first / 1e6:.1f} M tokens/s) into the memmap cache; "
              f"from the cache: {time.perf_counter() - t:.2f} s")
        print(f"stream:    train {len(corpus.tokens):,} + valid {len(corpus.valid_tokens):,} tokens, "
              f"{corpus.tokens.dtype}, vocab {len(corpus.vocab)}")
        print(f"memory:    {fmt(rss())}")

        train = time_training(corpus, args.bs, args.sl, args.batches)
        time_reading(train, args.bs, args.sl)
        mem = rss()
        print(f"memory:    {fmt(mem)}")
        print(f"result:    peak resident memory {mem['peak'] / 1024:.2f} GiB "
              f"({'under' if mem['peak'] < 2048 else 'OVER'} the 2 GiB limit)")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
