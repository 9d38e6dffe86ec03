"""Typed, range-checked argument types: every number on the command line goes through one.

A flag's value is refused at parse time (one line, exit code 2) when it is not a finite
number of the right kind inside its range, so nothing later has to guard against ``nan``,
``inf``, a negative seed or a count that cannot fit in memory::

    p.add_argument("--lr", type=real(above=0))            # finite, > 0
    p.add_argument("--moms", type=real(0, below=1), nargs=3)  # finite, in [0, 1)
    p.add_argument("--epochs", type=count(max=MAX_EPOCHS))  # whole number in [1, max]
    p.add_argument("--seed", type=SEED)                   # whole number in [0, 2**63)
"""

from __future__ import annotations

import argparse
import math
from typing import Callable

MAX_SEED = 2**63  # torch.manual_seed takes a 64-bit seed; numpy's generators any non-negative one
MAX_EPOCHS = 100_000
MAX_BS = 1 << 20  # rows per batch
MAX_SL = 1 << 20  # steps per row
MAX_SIZE = 1 << 16  # units of a layer or an embedding (a model's parameters are also checked against memory)
MAX_LAYERS = 64
MAX_COUNT = 10_000_000  # generated tokens, simulated games, sweep steps
MAX_SECONDS = 1e7
MAX_JOBS = 256  # worker processes training side by side


def real(min: float | None = None, max: float | None = None, *, above: float | None = None,
         below: float | None = None, zero_ok: bool = False) -> Callable[[str], float]:
    """A finite float in ``[min, max]`` (``above``/``below``: open bounds); ``zero_ok`` also
    accepts exactly 0 outside the range (e.g. temperature 0 = greedy)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if zero_ok and value == 0:
            return value
        bad = ((min is not None and value < min) or (max is not None and value > max)
               or (above is not None and value <= above) or (below is not None and value >= below))
        if bad:
            raise argparse.ArgumentTypeError(f"must be {describe}, got {text}")
        return value

    parts = [f"at least {min:g}" if min is not None else "", f"above {above:g}" if above is not None else "",
             f"at most {max:g}" if max is not None else "", f"below {below:g}" if below is not None else ""]
    describe = " and ".join(p for p in parts if p) or "finite"
    if zero_ok:
        describe = f"0 or {describe}"
    parse.__name__ = "number"
    return parse


def whole(min: int = 0, max: int | None = None) -> Callable[[str], int]:
    """A whole number in ``[min, max]`` (written in decimal)."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip(), 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < min or (max is not None and value > max):
            top = f" and at most {max:,}" if max is not None else ""
            raise argparse.ArgumentTypeError(f"must be a whole number of at least {min}{top}, got {text}")
        return value

    parse.__name__ = "whole number"
    return parse


def count(max: int = MAX_COUNT) -> Callable[[str], int]:
    """A whole number in ``[1, max]``."""
    return whole(1, max)


SEED = whole(0, MAX_SEED - 1)


def seed_list(text: str) -> list[int]:
    """``0,1,2`` -> ``[0, 1, 2]``: seeds in [0, 2**63)."""
    seeds = [SEED(s) for s in text.split(",") if s.strip()]
    if not seeds:
        raise argparse.ArgumentTypeError(f"seeds are whole numbers separated by commas, got {text!r}")
    return seeds


def name_list(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]
