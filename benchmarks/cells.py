"""Forward+backward speed of the from-scratch layers against PyTorch's built-ins.

    python benchmarks/cells.py            # hidden 64 and 256, seq 64, batch 64
    python benchmarks/cells.py --quick    # fewer repeats, no fast=False column

For each layer and size both implementations get the same weights and input
(bs, T, n_hid) with batch_first=True; one timed call is forward, ``output.sum()``,
backward (gradients for the input and every parameter). The implementations are timed
in turn, several times each, and the best time of each is kept (as ``timeit`` advises:
slower runs measure other processes, not the code). On a shared CPU the figures still
move by 10-20% from run to run, and far more with 2 threads: every matmul waits at a
barrier for both threads, so a busy core stalls the loop's 2*T small matmuls, while
torch.nn.LSTM (oneDNN) runs a whole layer in one parallel region. ``--threads 1``
compares the code alone, and ``--threads 1 --clock cpu`` times with this process's CPU
seconds, so that on a shared machine time spent waiting for a core is not counted.
``--precision bf16`` runs every forward pass under ``torch.autocast("cpu", torch.bfloat16)``
(the weights and the input stay float32, as in a bf16 training run).

As in training (the Learner does it), freed memory stays in the process
(``looplm.allocator.keep_freed_memory``), so neither implementation's timing includes the page
faults of mapping its activations afresh at every call. ``LOOPLM_NO_EXT=1`` times the Python loop
of the fast path instead of the C++ one.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

import torch

from looplm.allocator import keep_freed_memory
from looplm.nn import GRU, LSTM, RNN, native

LAYERS = {"RNN": (RNN, torch.nn.RNN), "GRU": (GRU, torch.nn.GRU), "LSTM": (LSTM, torch.nn.LSTM)}
TARGET = 1.3   # the from-scratch LSTM may be at most this many times slower than torch.nn.LSTM


clock = time.perf_counter  # or time.process_time (--clock cpu)
autocast = contextlib.nullcontext  # or bf16 autocast (--precision bf16)


def step_seconds(layer: torch.nn.Module, x: torch.Tensor, iters: int) -> float:
    """Mean seconds of one forward+backward over ``iters`` calls."""
    start = clock()
    for _ in range(iters):
        with autocast():
            output, _ = layer(x)
        output.float().sum().backward()
    return (clock() - start) / iters


def compare(name: str, n_hid: int, bs: int, sl: int, repeats: int, iters: int,
            reference: bool) -> dict:
    """Tokens/s of torch.nn's layer and of looplm's (fast, and optionally fast=False)."""
    ours_cls, torch_cls = LAYERS[name]
    torch.manual_seed(0)
    builtin = torch_cls(n_hid, n_hid, batch_first=True)
    layers = {"torch": builtin, "looplm": ours_cls(n_hid, n_hid, batch_first=True)}
    if reference:
        layers["reference"] = ours_cls(n_hid, n_hid, batch_first=True, fast=False)
    for layer in layers.values():
        layer.load_state_dict(builtin.state_dict())
    x = torch.randn(bs, sl, n_hid, requires_grad=True)
    times = {k: [] for k in layers}
    for layer in layers.values():         # warm up: first calls allocate and pick kernels
        step_seconds(layer, x, 2)
    for _ in range(repeats):
        for key, layer in layers.items():
            times[key].append(step_seconds(layer, x, iters))
    tokens = bs * sl
    return {k: tokens / min(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, skip fast=False")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--bs", type=int, default=64)
    parser.add_argument("--sl", type=int, default=64)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="cpu: CPU seconds (with --threads 1)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="bf16: forward under autocast")
    args = parser.parse_args(argv)
    global clock, autocast
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.precision == "bf16":
        autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()
    repeats, iters = (3, 3) if args.quick else (7, 5)
    print(f"torch {torch.__version__}, {args.precision}, {torch.get_num_threads()} threads, bs {args.bs}, "
          f"seq {args.sl}, forward+backward, tokens/s (best of {repeats}, {args.clock} clock); "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"looplm's LSTM loop in {'C++' if native.extension() else 'Python'}")
    header = f"{'layer':<6}{'hidden':>7}{'torch.nn':>12}{'looplm':>12}{'slower by':>11}"
    print(header + ("" if args.quick else f"{'fast=False':>12}"))
    worst = 0.0
    for n_hid in (64, 256):
        for name in LAYERS:
            r = compare(name, n_hid, args.bs, args.sl, repeats, iters, not args.quick)
            ratio = r["torch"] / r["looplm"]
            if name == "LSTM":
                worst = max(worst, ratio)
            line = f"{name:<6}{n_hid:>7}{r['torch']:>12,.0f}{r['looplm']:>12,.0f}{ratio:>10.2f}x"
            print(line + (f"{r['reference']:>12,.0f}" if "reference" in r else ""))
    verdict = "met" if worst <= TARGET else "MISSED"
    print(f"target: looplm LSTM at most {TARGET:.1f}x slower than torch.nn.LSTM: {verdict} "
          f"(worst {worst:.2f}x)")


if __name__ == "__main__":
    main()
