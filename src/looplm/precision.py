"""Mixed precision, decided once per run: which dtype the forward pass computes in.

    --precision fp32   everything in float32 (the reference; exactness tests use it)
    --precision bf16   forward and loss under ``torch.autocast(device, bfloat16)``
    --precision fp16   the same in float16, CUDA only, with a gradient scaler
    --precision auto   bf16 where the hardware has bf16 matrix units and the model is
                       wide enough to gain (see :func:`resolve_precision`), else fp32

Only the forward pass changes. The master weights, the optimiser state, the
losses and metrics and the checkpoints stay float32: the logits and the carried
state leave :meth:`Precision.forward` as float32, so the cross-entropy, the sums
of a epoch's losses and a checkpoint's hidden state never see bf16, and a run
trained in one precision resumes in any other.

    x ──► [autocast: embedding, matmuls in bf16] ──► logits.float(), state.float()
                                                          │
           loss (fp32) ──► backward (grads fp32, into the fp32 weights) ──► AdamW (fp32)
"""

from __future__ import annotations

import functools
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ContextManager

import torch
from torch import Tensor, nn

from looplm.errors import LooplmError
from looplm.state import map_state

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# `auto` picks bf16 for models at least this wide (units per recurrent layer). Below it,
# the per-step matmuls are too small for the bf16 units to pay for the casts around them:
# benchmarks/precision.py --sweep measured the break-even on this project's CPU.
AUTO_MIN_HIDDEN = 256
# ... or for a narrower model whose output layer has at least this many weights (vocab x
# features): there the decoder's matmul and its gradient take much of a step, and bf16 speeds
# them up. The smallest decoder in benchmarks/precision.py --sweep-vocab (1,000 x 64) gained 1.33x;
# the chapter's (30 x 64, 1,920 weights) gain 1.05-1.39x, too little to pay for bf16's rounding.
AUTO_MIN_DECODER = 64_000


@functools.cache
def cpu_bf16_units() -> str | None:
    """This CPU's bf16 matrix instructions as /proc/cpuinfo names them: "AMX-BF16" (Intel
    Sapphire Rapids and later), "AVX512-BF16" (AMD Zen 4 and later, Intel Cooper Lake), or None.
    None too where /proc/cpuinfo cannot be read (not Linux): there looplm does not guess, since
    an AVX-512 CPU without these instructions runs bf16 slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    for flag, name in ((" amx_bf16", "AMX-BF16"), (" avx512_bf16", "AVX512-BF16")):
        if flag in flags:
            return name
    return None


def cpu_has_bf16() -> bool:
    """Does this CPU have bf16 matrix instructions (AMX-BF16 or AVX512-BF16)?"""
    return cpu_bf16_units() is not None


def device_has_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_bf16()


def model_width(model: nn.Module) -> int | None:
    """Units per recurrent layer as the model's config names them (None when unknown)."""
    config = getattr(model, "config", None)
    for name in ("n_hidden", "n_hid"):
        if isinstance(getattr(config, name, None), int):
            return getattr(config, name)
    return None


def decoder_weights(model: nn.Module) -> int:
    """Weights of the model's largest linear layer, its decoder (vocab x features); 0 if none."""
    return max((m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear)), default=0)


@dataclass
class Precision:
    """How a run computes its forward pass. Build it with :func:`resolve_precision`.

    name: ``fp32``, ``bf16`` or ``fp16`` (never ``auto``: that is resolved first);
    device_type: ``cpu`` or ``cuda``; reason: one line saying why (printed by the CLI).
    """

    name: str = "fp32"
    device_type: str = "cpu"
    reason: str = ""
    scaler: Any = field(default=None, repr=False)  # torch.amp.GradScaler for fp16

    def __post_init__(self):
        if self.name not in DTYPES:
            raise LooplmError(f"unknown precision {self.name!r}: choose one of {', '.join(PRECISIONS)}")
        if self.name == "fp16" and self.scaler is None:
            # fp16's 5 exponent bits underflow small gradients: scale the loss up, unscale before the step
            self.scaler = torch.amp.GradScaler(self.device_type)
        self._unscaled = False

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.name]

    @property
    def skips_overflow(self) -> bool:
        """Does a step whose gradients overflowed get skipped (fp16's scaler) rather than stop training?"""
        return self.scaler is not None

    @property
    def mixed(self) -> bool:
        return self.name != "fp32"

    def autocast(self) -> ContextManager:
        """The context a forward pass runs in (nothing at all for fp32)."""
        if not self.mixed:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def forward(self, model: nn.Module, x: Tensor, state: Any = None, **kwargs: Any) -> tuple:
        """``model(x, state, **kwargs)`` under autocast, with the logits (first output) and
        the state (second) returned as float32; any further outputs are left as computed."""
        if not self.mixed:
            return model(x, state, **kwargs)
        with self.autocast():
            logits, new_state, *rest = model(x, state, **kwargs)
        return (logits.float(), map_state(new_state, _to_float), *rest)

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` itself for fp32, else a :class:`PrecisionModel` around it: for code that
        calls a model directly (evaluation, generation, play)."""
        return model if not self.mixed else PrecisionModel(model, self)

    # -- the step: loss scaling for fp16, plain for fp32 and bf16 ------------------
    def scale(self, loss: Tensor) -> Tensor:
        """The loss to backpropagate: for fp16, its gradient is times the current scale while its
        value stays the loss (so a strategy that reports the value it backpropagates reports
        the true loss); otherwise the loss itself."""
        if self.scaler is None:
            return loss
        scaled = self.scaler.scale(loss)
        return loss.detach() + (scaled - scaled.detach())

    def backward(self, loss: Tensor) -> None:
        self.scale(loss).backward()

    def unscale(self, opt: torch.optim.Optimizer) -> None:
        """Make ``.grad`` the true gradients before they are read (clipping); once per step."""
        if self.scaler is not None and not self._unscaled:
            self.scaler.unscale_(opt)
            self._unscaled = True

    def step(self, opt: torch.optim.Optimizer) -> None:
        """``opt.step()``; fp16 skips a step whose gradients overflowed and adapts the scale."""
        if self.scaler is None:
            opt.step()
            return
        self.scaler.step(opt)
        self.scaler.update()
        self._unscaled = False

    def state_dict(self) -> dict:
        """fp16: the scaler's scale and growth count (a resumed run starts a fresh scale)."""
        return {} if self.scaler is None else self.scaler.state_dict()


class PrecisionModel(nn.Module):
    """A model whose forward runs in ``precision`` (logits and state float32). Its parameters
    are the wrapped model's, under ``model.``; it is for running a model, never for saving it."""

    def __init__(self, model: nn.Module, precision: Precision):
        super().__init__()
        self.model, self.precision = model, precision
        self.layout = getattr(model, "layout", "every")
        self.config = getattr(model, "config", None)

    def forward(self, x: Tensor, state: Any = None, **kwargs: Any):
        return self.precision.forward(self.model, x, state, **kwargs)


def _to_float(t: Tensor) -> Tensor:
    return t.float() if t.is_floating_point() else t


FP32 = Precision()


def check_precision(spec: str, device: torch.device | str) -> None:
    """Refuse a precision this device cannot train in (before anything is built or written)."""
    device = torch.device(device)
    if spec not in PRECISIONS:
        raise LooplmError(f"unknown precision {spec!r}: choose one of {', '.join(PRECISIONS)}")
    if spec == "fp16" and device.type != "cuda":
        raise LooplmError("--precision fp16 needs a CUDA device: on a CPU use --precision bf16 (or auto)")
    if spec == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise LooplmError("this GPU has no bf16 support: use --precision fp16 (or auto)")


def resolve_precision(spec: str, device: torch.device | str, model: nn.Module | None = None) -> Precision:
    """The :class:`Precision` that ``spec`` (one of PRECISIONS) means for ``model`` on ``device``.

    ``auto`` picks bf16 when the device has bf16 matrix units (a CPU with AMX-BF16 or
    AVX512-BF16, a GPU with ``torch.cuda.is_bf16_supported()``) and the model has at
    least ``AUTO_MIN_HIDDEN`` units per recurrent layer; fp32 otherwise. fp16 is refused
    on a CPU: without a GPU's fp16 units it is slower than fp32 and less exact than bf16.
    """
    device = torch.device(device)
    check_precision(spec, device)
    if spec != "auto":
        return Precision(spec, device.type, f"precision {spec} (asked for)")
    return _auto(device, model)


def _auto(device: torch.device, model: nn.Module | None) -> Precision:
    where = "this GPU" if device.type == "cuda" else "this CPU"
    if not device_has_bf16(device):
        known = device.type == "cuda" or Path("/proc/cpuinfo").exists()
        return Precision("fp32", device.type, f"precision auto -> fp32: {where} has no bf16 matrix units"
                                              + ("" if known else " that looplm can detect (ask for --precision bf16)"))
    units = cpu_bf16_units() if device.type == "cpu" else None
    where = f"{where} ({units})" if units else where
    width = model_width(model) if model is not None else None
    decoder = decoder_weights(model) if model is not None else 0
    if width is not None and width >= AUTO_MIN_HIDDEN:
        return Precision("bf16", device.type, f"precision auto -> bf16: {where} has bf16 matrix units and the "
                                              f"model is {width} units wide (>= {AUTO_MIN_HIDDEN})")
    if decoder >= AUTO_MIN_DECODER:
        return Precision("bf16", device.type, f"precision auto -> bf16: {where} has bf16 matrix units and the "
                                              f"decoder has {decoder:,} weights (>= {AUTO_MIN_DECODER:,})")
    size = "of unknown width" if width is None else f"{width} units wide"
    return Precision("fp32", device.type, f"precision auto -> fp32: the model is {size} with a decoder of "
                                          f"{decoder:,} weights, below the {AUTO_MIN_HIDDEN} units or "
                                          f"{AUTO_MIN_DECODER:,} weights where bf16 starts to pay")


def precision_for_run(asked: str | None, trained: str | None, device: torch.device | str,
                      model: nn.Module) -> Precision:
    """The precision to run a trained model in (eval, generate): ``asked``, else the one the
    run trained in (``trained``; runs from before mixed precision: fp32) when this device
    can run it, else ``auto``."""
    if asked is not None:
        return resolve_precision(asked, device, model)
    try:
        return resolve_precision(trained or "fp32", device, model)
    except LooplmError:
        return resolve_precision("auto", device, model)
