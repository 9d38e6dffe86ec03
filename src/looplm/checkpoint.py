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
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import Tensor, nn

from looplm.atomic import fsync_dir, fsync_file, umask_mode
from looplm.callbacks import Callback
from looplm.errors import LooplmError
from looplm.finite import all_finite
from looplm.learner import Learner, TrainerSnapshot
from looplm.rundir import weights_mismatch
from looplm.state import State, state_from_flat, state_from_named, state_to_flat

CHECKPOINT = "checkpoint"  # checkpoints are CHECKPOINT-<number>; a bare CHECKPOINT/ is read too (older runs)
_NUMBERED = re.compile(rf"{CHECKPOINT}-(\d+)")
WRITE_STEPS = 7


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

    def __init__(self, path: Path, epoch: int, batch: int, restart: bool = False):
        where = (f"interrupted during epoch {epoch}, which a resumed run starts again; checkpoint in {path}"
                 if restart else f"interrupted at epoch {epoch}, batch {batch}: checkpoint saved in {path}")
        super().__init__(where)
        self.path = path


def _trainer_files(snap: TrainerSnapshot) -> tuple[dict[str, Tensor], dict]:
    flat = state_to_flat(snap.state, "state")
    state_spec = flat.pop("state.spec")  # the state's structure (JSON text) goes to trainer.json
    tensors: dict[str, Tensor] = dict(flat)
    opt = snap.optimizer
    for pid, slots in opt["state"].items():
        for name, value in slots.items():
            tensors[f"opt.{pid}.{name}"] = value if isinstance(value, Tensor) else torch.tensor(value)
    tensors["rng"] = snap.rng
    tensors.update({f"rng.{rank}": rng for rank, rng in enumerate(snap.rank_rngs)})  # data parallel
    meta = {
        "epoch": snap.epoch, "batch": snap.batch, "train_iter": snap.train_iter, "history": snap.history,
        "loss_sum": snap.loss_sum, "state_spec": state_spec, "param_groups": opt["param_groups"],
        "opt_slots": {str(pid): sorted(slots) for pid, slots in opt["state"].items()},
        "rank_rngs": len(snap.rank_rngs),
    }
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, meta


def save_checkpoint(run_dir: str | Path, model: nn.Module, snap: TrainerSnapshot) -> Path:
    """Write the next numbered checkpoint (the steps in the module docstring); its path."""
    run_dir = Path(run_dir)
    older = _numbered(run_dir)
    number = older[-1][0] + 1 if older else 0
    final = run_dir / f"{CHECKPOINT}-{number:06d}"
    tmp = run_dir / f".{final.name}.tmp"
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


def _state(meta: dict, tensors: dict[str, Tensor]) -> State:
    if "state_spec" in meta:
        return state_from_flat({**tensors, "state.spec": meta["state_spec"]}, "state")
    return state_from_named(meta["state"], tensors)  # a checkpoint of looplm 0.1


def load_checkpoint(run_dir: str | Path, model: nn.Module) -> TrainerSnapshot:
    """Load the weights into ``model`` and return the trainer snapshot; weights of other
    shapes (e.g. another vocab) are refused by name before anything is loaded."""
    path = latest_checkpoint(run_dir) or Path(run_dir) / CHECKPOINT
    if not (path / "trainer.json").is_file():
        raise LooplmError(f"{run_dir} has no checkpoint to resume from (train with --out first)")
    why = weights_mismatch(model, path / "model.safetensors", getattr(getattr(model, "config", None), "vocab_sz", None))
    if why:
        raise LooplmError(f"the checkpoint in {path} does not fit the model config.json describes: {why} "
                          "(the run directory mixes files of different runs)")
    try:
        meta = json.loads((path / "trainer.json").read_text(encoding="utf-8"))
        missing, unexpected = load_model(model, str(path / "model.safetensors"), strict=False)
        tensors = load_file(str(path / "trainer.safetensors"))
        optimizer = {
            "state": {int(pid): {name: tensors[f"opt.{pid}.{name}"] for name in names}
                      for pid, names in meta["opt_slots"].items()},
            "param_groups": meta["param_groups"],
        }
        snap = TrainerSnapshot(
            epoch=meta["epoch"], batch=meta["batch"], train_iter=meta["train_iter"], history=meta["history"],
            loss_sum=meta["loss_sum"], state=_state(meta, tensors), optimizer=optimizer,
            rng=tensors["rng"], rank_rngs=tuple(tensors[f"rng.{r}"] for r in range(meta.get("rank_rngs", 0))),
        )
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, ValueError, TypeError,
            SafetensorError, RuntimeError) as err:
        raise LooplmError(f"the checkpoint in {path} is damaged ({err}): resume is not possible, retrain") from None
    if missing or unexpected:
        raise LooplmError(f"the checkpoint in {path} does not match the model: missing {missing}, unexpected {unexpected}")
    if not all_finite(model):
        raise LooplmError(f"the checkpoint in {path} holds non-finite weights: resume is not possible, retrain")
    return snap


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
        if learn.strategy.resumable_mid_epoch:
            path = self._save(learn)
            raise TrainingInterrupted(path, learn.epoch, learn.batch)
        # a strategy that walks the whole stream at once restarts its epoch: keep the
        # checkpoint of the last finished epoch
        path = latest_checkpoint(self.run_dir)
        if not learn.dist.is_main:
            raise KeyboardInterrupt
        if path is None:
            print(f"looplm: stopped during the first epoch of {self.run_dir}; this training strategy "
                  "checkpoints at the end of each epoch, so there is nothing to resume: train again",
                  file=sys.stderr)
            raise KeyboardInterrupt
        raise TrainingInterrupted(path, learn.epoch, 0, restart=True)


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
