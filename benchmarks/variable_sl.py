"""The first epoch of ``--variable-sl`` with and without bucketed lengths.

oneDNN builds (and caches) a kernel for every new input shape it meets, so AWD-LSTM's
random sequence lengths, a new length almost every batch, pay that set-up cost again
and again during the first epoch. Rounding each length to a multiple of ``--sl-bucket``
(8 by default) leaves a handful of shapes. Each variant trains one epoch in a fresh
process (a cold kernel cache, as a new run has); the variants alternate, ``--repeats``
times each, and the script prints every epoch's wall and CPU seconds and the median ratios
(with ``--threads 1`` on a shared machine, CPU seconds do not count time spent waiting for a
core). ``--batches N`` times only the epoch's first N updates (a large corpus's first epoch
takes long; the shapes are met early).

    python benchmarks/variable_sl.py [--model lstm] [--precision bf16] [--repeats 2] [--threads N]
                                     [--data human-numbers|PATH] [--batches N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

CHILD = """
import sys, time, torch
torch.set_num_threads({threads})
from looplm.data import load_corpus
from looplm.learner import Learner
from looplm.models import build_model
from looplm.strategies import VariableChunks
corpus = load_corpus({data!r})
torch.manual_seed(0)
model = build_model({model!r}, len(corpus.vocab), **{config!r})
train, valid = corpus.batches(bs={bs}, sl={sl}, layout="every")
strategy = VariableChunks(seed=0, bucket={bucket})
learn = Learner(model, train, valid, log=None, progress=False, strategy=strategy, precision={precision!r})
learn.validate = lambda data=None: (0.0, 0.0)  # time training only
start, cpu = time.perf_counter(), time.process_time()
learn.fit(1, 1e-3, max_updates={batches} or None)
lengths = strategy.lengths(train, 0)[:learn.train_iter]
print(time.perf_counter() - start, time.process_time() - cpu, len(set(lengths)), len(lengths))
"""

MODELS = {
    "lstm": dict(emb_sz=64, n_hidden=512, n_layers=2, p=0.2),
    "awd-lstm": dict(emb_sz=400, n_hid=1152, n_layers=3),
}


def first_epoch(args, bucket: int) -> tuple[float, float, int, int]:
    """Wall and CPU seconds of the first epoch in a fresh process, its distinct lengths and its updates."""
    code = CHILD.format(threads=args.threads, model=args.model, config=MODELS[args.model], bs=args.bs,
                        sl=args.sl, bucket=bucket, precision=args.precision, data=args.data, batches=args.batches)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1]), int(out[2]), int(out[3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=MODELS, default="lstm")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    parser.add_argument("--bs", type=int, default=32)
    parser.add_argument("--sl", type=int, default=70, help="the mean length (AWD-LSTM's 70)")
    parser.add_argument("--bucket", type=int, default=8, help="lengths rounded to multiples of this")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", default="human-numbers", help="a source name or a text file (char level)")
    parser.add_argument("--batches", type=int, default=0, help="time only the first N updates (0: the epoch)")
    args = parser.parse_args()
    load = " ".join(open("/proc/loadavg").read().split()[:3]) if sys.platform == "linux" else "?"
    print(f"{args.model} {MODELS[args.model]}, {args.data}, bs {args.bs}, sl {args.sl}, {args.precision}, "
          f"{args.threads} threads, load average {load}")
    times: dict[int, list[tuple[float, float]]] = {1: [], args.bucket: []}
    for _ in range(args.repeats):
        for bucket in times:
            wall, cpu, shapes, batches = first_epoch(args, bucket)
            times[bucket].append((wall, cpu))
            label = "any length" if bucket == 1 else f"multiples of {bucket}"
            print(f"  {label:<16} first epoch {wall:7.2f} s wall {cpu:7.2f} s CPU   {shapes:3d} distinct lengths "
                  f"in {batches} batches", flush=True)
    for i, clock in enumerate(("wall", "CPU")):
        ratio = statistics.median(a[i] / b[i] for a, b in zip(times[1], times[args.bucket]))
        print(f"first epoch without buckets / with, {clock} seconds: {ratio:.2f}x (median of {args.repeats})")


if __name__ == "__main__":
    main()
