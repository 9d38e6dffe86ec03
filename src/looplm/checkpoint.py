"""Checkpoints that resume: weights, optimiser, position in the stream, hidden state, RNG.

    RUNDIR/checkpoint-000007/   the newest complete checkpoint (numbered in the order written)
      model.safetensors         the weights
      trainer.safetensors       optimiser moments, the carried hidden state, the RNG state
      trainer.json              epoch, next batch, iteration, history, loss so far, optimiser groups

Only safetensors and JSON: loading a checkpoint never unpickles or runs code.

Crash-safe by construction: a checkpoint is written into a hidden folder, every file and
the folder are fsynced, and only then is the folder renamed to the next number (one atomic
rename, whose folder is fsynced too); older checkpoints are removed after that. A kill at
any instant leaves the newest complete checkpoint under the highest number, and hidden
folders that resume ignores and the next write removes::

    step 1-3  write and fsync the three files into .checkpoint-000008.tmp/
    step 4    fsync .checkpoint-000008.tmp/
    step 5    rename it to checkpoint-000008/          <- the new checkpoint exists from here
    step 6    fsync RUNDIR
    step 7    remove checkpoint-000007/ (and any older one or leftover)

``LOOPLM_CHECKPOINT_FAULT=k`` kills the process (SIGKILL) after step ``k`` of every
checkpoint write: the fault-injection tests use it (or :data:`fault_hook`) to stop the
writer at each step in turn.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import Tensor, nn

from looplm.atomic import fsync_dir, fsync_file, umask_mode
from looplm.callbacks import Callback
from looplm.errors import LooplmError
from looplm.files import check_file, read_json
from looplm.strict import from_dict
from looplm.finite import all_finite
from looplm.learner import EpochMetrics, Learner, TrainerSnapshot
from looplm.optim import param_groups
from looplm.rundir import weights_mismatch
from looplm.state import State, state_from_flat, state_from_named, state_leaves, state_to_flat

CHECKPOINT = "checkpoint"  # checkpoints are CHECKPOINT-<number>; a bare CHECKPOINT/ is read too (older runs)
_NUMBERED = re.compile(rf"{CHECKPOINT}-(\d+)")
WRITE_STEPS = 7
STRATEGY = "strategy"  # trainer.safetensors' prefix for the strategy's walk (TBPTT's stream)


def _fault_from_env() -> Callable[[int], None] | None:
    step = os.environ.get("LOOPLM_CHECKPOINT_FAULT")
    if not step:
        return None
    return lambda k: os.kill(os.getpid(), signal.SIGKILL) if k == int(step) else None


fault_hook: Callable[[int], None] | None = _fault_from_env()  # called after each step of a write


def _step(k: int) -> None:
    if fault_hook is not None:
        fault_hook(k)


def _numbered(run_dir: Path) -> list[tuple[int, Path]]:
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := _NUMBERED.fullmatch(p.name))]
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of ``run_dir`` (None when there is none)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return None
    numbered = [p for _, p in _numbered(run_dir) if p.is_dir() and not p.is_symlink()]
    if numbered:
        return numbered[-1]
    legacy = run_dir / CHECKPOINT
    return legacy if legacy.is_dir() and not legacy.is_symlink() else None


class TrainingInterrupted(Exception):
    """Ctrl-C during training: a checkpoint was written to ``path``."""

    def __init__(self, path: Path, epoch: int, batch: int):
        super().__init__(f"interrupted at epoch {epoch}, batch {batch}: checkpoint saved in {path}")
        self.path = path


def _trainer_files(snap: TrainerSnapshot) -> tuple[dict[str, Tensor], dict]:
    flat = state_to_flat(snap.state, "state")
    state_spec = flat.pop("state.spec")  # the state's structure (JSON text) goes to trainer.json
    state_none = json.loads(flat.pop("state.none"))  # ... and where its None leaves are
    tensors: dict[str, Tensor] = dict(flat)
    opt = snap.optimizer
    for pid, slots in opt["state"].items():
        for name, value in slots.items():
            tensors[f"opt.{pid}.{name}"] = value if isinstance(value, Tensor) else torch.tensor(value)
    tensors["rng"] = snap.rng
    tensors.update({f"rng.{rank}": rng for rank, rng in enumerate(snap.rank_rngs)})  # data parallel
    # the strategy's walk (TBPTT's stream): its tensors beside the others, its numbers and texts in JSON
    tensors.update({f"{STRATEGY}.{k}": v for k, v in snap.strategy.items() if isinstance(v, Tensor)})
    walk_ints = {k: v for k, v in snap.strategy.items() if isinstance(v, int)}
    walk_texts = {k: v for k, v in snap.strategy.items() if isinstance(v, str)}
    meta = {
        "epoch": snap.epoch, "batch": snap.batch, "train_iter": snap.train_iter, "history": snap.history,
        "loss_sum": snap.loss_sum, "state_spec": state_spec, "state_none": state_none, "param_groups": opt["param_groups"],
        "opt_slots": {str(pid): sorted(slots) for pid, slots in opt["state"].items()},
        "rank_rngs": len(snap.rank_rngs), "strategy_ints": walk_ints, "strategy_texts": walk_texts,
    }
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, meta


def save_checkpoint(run_dir: str | Path, model: nn.Module, snap: TrainerSnapshot) -> Path:
    """Write the next numbered checkpoint (the steps in the module docstring); its path."""
    run_dir = Path(run_dir)
    older = _numbered(run_dir)
    number = older[-1][0] + 1 if older else 0
    final = run_dir / f"{CHECKPOINT}-{number:06d}"
    tmp = run_dir / f".{final.name}.tmp"
    if tmp.is_symlink() or tmp.is_file():  # a leftover that is not our folder: removed, never followed
        tmp.unlink()
    shutil.rmtree(tmp, ignore_errors=True)  # a leftover of a killed writer
    tmp.mkdir(mode=0o777)  # less the umask
    tensors, meta = _trainer_files(snap)
    writes = (lambda p: save_model(model, str(p)), lambda p: save_file(tensors, str(p)),
              lambda p: p.write_text(json.dumps(meta), encoding="utf-8"))
    for k, (name, write) in enumerate(zip(("model.safetensors", "trainer.safetensors", "trainer.json"), writes), 1):
        write(tmp / name)
        os.chmod(tmp / name, umask_mode())
        fsync_file(tmp / name)
        _step(k)
    fsync_dir(tmp)
    _step(4)
    tmp.rename(final)
    _step(5)
    fsync_dir(run_dir)
    _step(6)
    for stale in [p for _, p in older] + [p for p in run_dir.glob(f".{CHECKPOINT}*") if p != tmp] + [run_dir / CHECKPOINT]:
        if stale.is_symlink() or stale.is_file():
            stale.unlink()
        elif stale.is_dir():
            shutil.rmtree(stale)
    _step(7)
    return final


@dataclass
class TrainerMeta:
    """trainer.json, as :func:`save_checkpoint` writes it (checked by looplm.strict)."""

    epoch: int
    batch: int
    train_iter: int
    history: list[EpochMetrics]
    loss_sum: float
    param_groups: list[dict[str, Any]]
    opt_slots: dict[str, list[str]]
    rank_rngs: int = 0
    state_spec: str | None = None  # the carried state's structure (torch pytree spec, JSON text)
    state_none: list[int] | None = None  # its None leaves' positions (None: written before they were kept)
    state: str | None = None  # looplm 0.1: "none", "tensor" or "tuple:n"
    # the strategy's walk (TBPTT's stream) less its tensors: its numbers, and its texts (state structures)
    strategy_ints: dict[str, int] = field(default_factory=dict)
    strategy_texts: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if min(self.epoch, self.batch, self.train_iter, self.rank_rngs) < 0:
            raise LooplmError("epoch, batch, train_iter and rank_rngs must not be negative")
        if self.state is not None and not re.fullmatch(r"none|tensor|tuple:([1-9]|1[0-6])", self.state):
            raise LooplmError(f"unknown state kind {self.state!r}")


def _state(meta: TrainerMeta, tensors: dict[str, Tensor]) -> State:
    if meta.state_spec is not None:
        none = {} if meta.state_none is None else {"state.none": json.dumps(meta.state_none)}
        return state_from_flat({**tensors, "state.spec": meta.state_spec, **none}, "state")
    return state_from_named(meta.state or "none", tensors)  # a checkpoint of looplm 0.1


def _check_tensors(model: nn.Module, meta: TrainerMeta, tensors: dict[str, Tensor], bs: int | None) -> str | None:
    """What is wrong with the optimiser, RNG and state tensors of a checkpoint (None: nothing)."""
    params = [p for g in param_groups(model, 0.0) for p in g["params"]]
    if [i for g in meta.param_groups for i in g.get("params", ())] != list(range(len(params))):
        return f"its optimiser groups do not hold the model's {len(params)} parameters"
    rng = torch.get_rng_state()
    for key in ["rng", *(f"rng.{r}" for r in range(meta.rank_rngs))]:
        if key not in tensors or tensors[key].dtype != rng.dtype or tensors[key].shape != rng.shape:
            return f"its RNG state {key} is not a {rng.dtype} tensor of shape {list(rng.shape)}"
    for pid, names in meta.opt_slots.items():
        if not pid.isdigit() or int(pid) >= len(params):
            return f"it holds optimiser state for parameter {pid!r} of {len(params)}"
        for name in names:
            t = tensors.get(f"opt.{pid}.{name}")
            want = () if name == "step" else tuple(params[int(pid)].shape)
            if t is None or tuple(t.shape) != want or not t.is_floating_point():
                return f"its optimiser state opt.{pid}.{name} is not a float tensor of shape {list(want)}"
    try:
        leaves = state_leaves(_state(meta, tensors))
    except Exception as err:  # a structure torch's pytree cannot read, or a tensor it names is missing
        return f"its hidden state cannot be rebuilt ({type(err).__name__}: {err})"
    for t in leaves:
        if t is not None and (t.dim() < 2 or not t.is_floating_point() or (bs is not None and t.shape[1] != bs)):
            return f"its hidden state holds a tensor of shape {list(t.shape)}, not float rows of {bs}"
    return None


def load_checkpoint(run_dir: str | Path, model: nn.Module, bs: int | None = None) -> TrainerSnapshot:
    """Load the weights into ``model`` and return the trainer snapshot (``bs``: the run's rows,
    which the hidden state must have). Every part is checked before it is used: weights of
    other shapes (e.g. another vocab) are refused by name before anything is loaded,
    trainer.json against :class:`TrainerMeta`, the tensors against the model."""
    path = latest_checkpoint(run_dir) or Path(run_dir) / CHECKPOINT
    if not (path / "trainer.json").exists():
        raise LooplmError(f"{run_dir} has no checkpoint to resume from (train with --out first)")
    fix = "resume is not possible, retrain"
    meta = from_dict(TrainerMeta, read_json(path / "trainer.json", "the checkpoint's trainer.json", fix),
                     str(path / "trainer.json"))
    for name in ("model.safetensors", "trainer.safetensors"):
        check_file(path / name, "the checkpoint file", fix)
    why = weights_mismatch(model, path / "model.safetensors", getattr(getattr(model, "config", None), "vocab_sz", None))
    if why:
        raise LooplmError(f"the checkpoint in {path} does not fit the model config.json describes: {why} "
                          "(the run directory mixes files of different runs)")
    try:
        tensors = load_file(str(path / "trainer.safetensors"))
        why = _check_tensors(model, meta, tensors, bs)
        missing, unexpected = load_model(model, str(path / "model.safetensors"), strict=False)
    except (OSError, ValueError, SafetensorError, RuntimeError) as err:
        raise LooplmError(f"the checkpoint in {path} is damaged ({err}): {fix}") from None
    if why:
        raise LooplmError(f"the checkpoint in {path} is damaged: {why}; {fix}")
    if missing or unexpected:
        raise LooplmError(f"the checkpoint in {path} does not match the model: missing {missing}, unexpected {unexpected}")
    if not all_finite(model):
        raise LooplmError(f"the checkpoint in {path} holds non-finite weights: {fix}")
    optimizer = {"state": {int(pid): {name: tensors[f"opt.{pid}.{name}"] for name in names}
                           for pid, names in meta.opt_slots.items()},
                 "param_groups": meta.param_groups}
    return TrainerSnapshot(
        epoch=meta.epoch, batch=meta.batch, train_iter=meta.train_iter, history=[m.as_dict() for m in meta.history],
        loss_sum=meta.loss_sum, state=_state(meta, tensors), optimizer=optimizer,
        rng=tensors["rng"], rank_rngs=tuple(tensors[f"rng.{r}"] for r in range(meta.rank_rngs)),
        strategy={**meta.strategy_ints, **meta.strategy_texts, **{k[len(STRATEGY) + 1:]: v for k, v in tensors.items()
                                      if k.startswith(f"{STRATEGY}.")}},
    )


class Checkpointer(Callback):
    """Write a checkpoint after every epoch, and when asked to stop (Ctrl-C) after the current batch."""

    order = 100

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.stop_requested = False

    def _save(self, learn: Learner) -> Path:
        snap = learn.snapshot()  # every rank of a job takes part in the snapshot, rank 0 writes it
        return save_checkpoint(self.run_dir, learn.model, snap) if learn.dist.is_main else self.run_dir / CHECKPOINT

    def after_epoch(self, learn: Learner) -> None:
        self._save(learn)

    def after_batch(self, learn: Learner) -> None:
        if not learn.dist.should_stop(self.stop_requested, learn.train_iter):
            return
        path = self._save(learn)
        raise TrainingInterrupted(path, learn.epoch, learn.batch)


@contextmanager
def stop_on_sigint(checkpointer: Checkpointer) -> Iterator[None]:
    """While training, Ctrl-C asks the checkpointer to stop after the current batch
    (a second Ctrl-C stops at once)."""

    def ask(signum, frame):
        if checkpointer.stop_requested:
            raise KeyboardInterrupt
        checkpointer.stop_requested = True

    try:
        previous = signal.signal(signal.SIGINT, ask)
    except ValueError:  # not the main thread: leave Ctrl-C alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
