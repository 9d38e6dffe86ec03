"""Training tokens/s and peak memory, fp32 against bf16 autocast, per model.

One training step is what the learner runs: the forward pass through
``looplm.precision.Precision.forward`` (autocast, float32 logits and state), the
cross-entropy in float32, backward, gradient clipping, AdamW on float32 weights,
the state carried and detached, freed memory kept for reuse (``looplm.allocator``).
fp32 and bf16 are timed ALTERNATELY, round after round in one process, so a load that
comes and goes hits both alike; the ratio is the median of the rounds' ratios.

    python benchmarks/precision.py [--threads N] [--rounds 5] [--steps 4] [--only char-lstm,lm7]
    python benchmarks/precision.py --sweep      # the break-even hidden size behind --precision auto
    python benchmarks/precision.py --sweep-vocab  # ... and the break-even vocabulary of narrow models

Peak memory: each (model, precision) trains ``--steps`` steps in a fresh process and
reports its peak resident set (VmHWM, which includes Python and torch).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from looplm.allocator import keep_freed_memory
from looplm.learner import default_adam, param_groups
from looplm.models import build_model
from looplm.precision import Precision, cpu_bf16_units
from looplm.state import detach_state


@dataclass(frozen=True)
class Case:
    name: str
    model: str
    vocab: int
    bs: int
    sl: int
    config: dict = field(default_factory=dict)
    ar_tar: bool = False


CASES = {c.name: c for c in (
    Case("lm7", "lm7", 30, 64, 16, dict(n_hidden=64, n_layers=2, p=0.4), ar_tar=True),
    Case("lm6-gru", "lm6-gru", 30, 64, 16, dict(n_hidden=64, n_layers=2)),
    Case("lm6-scratch-lstm", "lm6-scratch-lstm", 30, 64, 16, dict(n_hidden=64, n_layers=2)),
    Case("awd-lstm", "awd-lstm", 30, 64, 72, dict(emb_sz=400, n_hid=1152, n_layers=3)),  # fastai preset sizes
    Case("char-lstm", "lstm", 65, 32, 128, dict(emb_sz=64, n_hidden=512, n_layers=2, p=0.2)),  # README's 2x512
)}


class Trainer:
    """A model, its optimiser and its carried state, stepping on random tokens."""

    def __init__(self, case: Case, precision: str):
        keep_freed_memory()  # as the learner does
        torch.manual_seed(0)
        self.case, self.precision = case, Precision(precision, "cpu")
        self.model = build_model(case.model, case.vocab, **case.config)
        self.opt = default_adam(param_groups(self.model, 0.01), 1e-3, 0.01)
        self.tokens = torch.randint(0, case.vocab, (case.bs, case.sl + 1))
        self.state = None

    def step(self) -> None:
        x, y = self.tokens[:, :-1], self.tokens[:, 1:]
        if self.case.ar_tar:
            logits, state, (raw, dropped) = self.precision.forward(self.model, x, self.state, return_activations=True)
        else:
            logits, state = self.precision.forward(self.model, x, self.state)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        if self.case.ar_tar:
            loss = loss + 2 * dropped.float().pow(2).mean() + (raw[:, 1:] - raw[:, :-1]).float().pow(2).mean()
        self.precision.backward(loss)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0, foreach=True)
        self.precision.step(self.opt)
        self.opt.zero_grad(set_to_none=True)
        self.state = detach_state(state)

    def timed(self, steps: int) -> float:
        """Tokens per second over ``steps`` steps."""
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        return steps * self.case.bs * self.case.sl / (time.perf_counter() - start)


def alternate(case: Case, rounds: int, steps: int) -> dict[str, list[float]]:
    """tokens/s of fp32 and bf16, one timing of each per round, after one warm-up step each."""
    trainers = {p: Trainer(case, p) for p in ("fp32", "bf16")}
    for t in trainers.values():
        t.step()  # oneDNN builds its kernels for these shapes
    rates: dict[str, list[float]] = {p: [] for p in trainers}
    for _ in range(rounds):
        for p, t in trainers.items():
            rates[p].append(t.timed(steps))
    return rates


def peak_rss_mib(case: str, precision: str, steps: int, threads: int) -> float:
    """Peak resident set of a fresh process training ``steps`` steps. Read from VmHWM, not
    ``ru_maxrss``: Linux keeps a process's ru_maxrss across fork and exec, so a child would report
    this benchmark's own peak whenever that is larger."""
    code = (f"import sys, resource, torch; sys.argv = ['x']; torch.set_num_threads({threads}); "
            "sys.path.insert(0, 'benchmarks'); import precision as b; "
            f"t = b.Trainer(b.CASES[{case!r}], {precision!r}); [t.step() for _ in range({steps})]; "
            "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return int(out.split()[-1]) / 1024


def report(name: str, case: Case, rates: dict[str, list[float]], memory: dict[str, float] | None) -> None:
    fp32, bf16 = statistics.median(rates["fp32"]), statistics.median(rates["bf16"])
    ratio = statistics.median(b / f for f, b in zip(rates["fp32"], rates["bf16"]))
    mem = f"{memory['fp32']:>10.0f}{memory['bf16']:>10.0f}" if memory else ""
    print(f"{name:<18}{case.bs:>4}{case.sl:>5}{fp32:>12,.0f}{bf16:>12,.0f}{ratio:>10.2f}x{mem}", flush=True)


def sweep(rounds: int, steps: int) -> None:
    """bf16/fp32 of a 2-layer LSTM LM by hidden size, at the chapter's batch and the README's."""
    print(f"{'hidden':<18}{'bs':>4}{'sl':>5}{'fp32 tok/s':>12}{'bf16 tok/s':>12}{'bf16/fp32':>11}")
    for bs, sl in ((64, 16), (32, 128)):
        for hidden in (64, 128, 256, 512, 1024):
            case = Case(f"lstm {hidden}", "lstm", 65, bs, sl, dict(emb_sz=64, n_hidden=hidden, n_layers=2, p=0.0))
            report(case.name, case, alternate(case, rounds, steps), None)


def sweep_vocab(rounds: int, steps: int) -> None:
    """bf16/fp32 of narrow word-level LSTM LMs (2x200 and 2x64, tied) by vocabulary size: the
    decoder's matmul, not the recurrence, is what bf16 speeds up there."""
    print(f"{'vocab x hidden':<18}{'bs':>4}{'sl':>5}{'fp32 tok/s':>12}{'bf16 tok/s':>12}{'bf16/fp32':>11}")
    for hidden in (64, 200):
        for vocab in (1_000, 3_000, 10_000, 30_000):
            case = Case(f"{vocab} x {hidden}", "lstm", vocab, 20, 35,
                        dict(emb_sz=hidden, n_hidden=hidden, n_layers=2, p=0.2, tie_weights=True))
            report(case.name, case, alternate(case, rounds, steps), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--rounds", type=int, default=5, help="alternations of fp32 and bf16")
    parser.add_argument("--steps", type=int, default=4, help="training steps per timing")
    parser.add_argument("--only", default=None, help=f"comma-separated cases among {', '.join(CASES)}")
    parser.add_argument("--sweep", action="store_true", help="bf16/fp32 by hidden size instead of the cases")
    parser.add_argument("--sweep-vocab", action="store_true", help="bf16/fp32 by vocabulary size (word-level)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = open("/proc/loadavg").read().split()[:3] if sys.platform == "linux" else "?"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, bf16 units: {cpu_bf16_units() or 'none'}, "
          f"load average {' '.join(load)}; median of {args.rounds} alternating rounds of {args.steps} steps")
    if args.sweep or args.sweep_vocab:
        (sweep if args.sweep else sweep_vocab)(args.rounds, args.steps)
        return
    print(f"{'model':<18}{'bs':>4}{'sl':>5}{'fp32 tok/s':>12}{'bf16 tok/s':>12}{'bf16/fp32':>11}"
          f"{'fp32 MiB':>10}{'bf16 MiB':>10}")
    for name in (args.only.split(",") if args.only else CASES):
        case = CASES[name]
        rates = alternate(case, args.rounds, args.steps)
        memory = None if args.no_memory else {
            p: peak_rss_mib(name, p, args.steps, torch.get_num_threads()) for p in ("fp32", "bf16")}
        report(name, case, rates, memory)
    print(f"peak RSS of a fresh process training {args.steps} steps (Python and torch included); "
          f"this run's own peak: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
