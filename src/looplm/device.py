"""Device choice and seeding: the same code on a CPU or a CUDA device."""

from __future__ import annotations

import random

import numpy as np
import torch

from looplm.errors import LooplmError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` takes CUDA when one is present, else the CPU."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cuda" and not torch.cuda.is_available():
        raise LooplmError("--device cuda was asked for but no CUDA device is available: use --device cpu or auto")
    if spec not in DEVICES:
        raise LooplmError(f"unknown device {spec!r}: choose one of {', '.join(DEVICES)}")
    return torch.device(spec)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices) so a run repeats."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
