"""Checkpoints that resume: weights, optimiser, position in the stream, hidden state, RNG.

    RUNDIR/checkpoint/
      model.safetensors     the weights
      trainer.safetensors   optimiser moments, the carried hidden state, the RNG state
      trainer.json          epoch, next batch, iteration, history, loss so far, optimiser groups

Only safetensors and JSON: loading a checkpoint never unpickles or runs code.
The directory is written beside the old one and swapped in by renames, so an
interruption leaves either the previous checkpoint or the new one.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import Tensor, nn

from looplm.callbacks import Callback
from looplm.errors import LooplmError
from looplm.learner import Learner, TrainerSnapshot
from looplm.rundir import weights_mismatch

CHECKPOINT = "checkpoint"


class TrainingInterrupted(Exception):
    """Ctrl-C during training: a checkpoint was written to ``path``."""

    def __init__(self, path: Path, epoch: int, batch: int, restart: bool = False):
        where = (f"interrupted during epoch {epoch}, which a resumed run starts again; checkpoint in {path}"
                 if restart else f"interrupted at epoch {epoch}, batch {batch}: checkpoint saved in {path}")
        super().__init__(where)
        self.path = path


def _state_tensors(state) -> tuple[str, dict[str, Tensor]]:
    if state is None:
        return "none", {}
    if isinstance(state, Tensor):
        return "tensor", {"state.0": state}
    return f"tuple:{len(state)}", {f"state.{i}": t for i, t in enumerate(state)}


def _state_from(kind: str, tensors: dict[str, Tensor]):
    if kind == "none":
        return None
    if kind == "tensor":
        return tensors["state.0"]
    return tuple(tensors[f"state.{i}"] for i in range(int(kind.split(":")[1])))


def save_checkpoint(run_dir: str | Path, model: nn.Module, snap: TrainerSnapshot) -> Path:
    run_dir = Path(run_dir)
    final = run_dir / CHECKPOINT
    tmp = Path(tempfile.mkdtemp(prefix=f".{CHECKPOINT}.", dir=run_dir))
    try:
        save_model(model, str(tmp / "model.safetensors"))
        state_kind, tensors = _state_tensors(snap.state)
        opt = snap.optimizer
        for pid, slots in opt["state"].items():
            for name, value in slots.items():
                tensors[f"opt.{pid}.{name}"] = value if isinstance(value, Tensor) else torch.tensor(value)
        tensors["rng"] = snap.rng
        tensors.update({f"rng.{rank}": rng for rank, rng in enumerate(snap.rank_rngs)})  # data parallel
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / "trainer.safetensors"))
        meta = {
            "epoch": snap.epoch, "batch": snap.batch, "train_iter": snap.train_iter, "history": snap.history,
            "loss_sum": snap.loss_sum, "state": state_kind, "param_groups": opt["param_groups"],
            "opt_slots": {str(pid): sorted(slots) for pid, slots in opt["state"].items()},
            "rank_rngs": len(snap.rank_rngs),
        }
        (tmp / "trainer.json").write_text(json.dumps(meta), encoding="utf-8")
        old = run_dir / f".{CHECKPOINT}.old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load_checkpoint(run_dir: str | Path, model: nn.Module) -> TrainerSnapshot:
    """Load the weights into ``model`` and return the trainer snapshot; weights of other
    shapes (e.g. another vocab) are refused by name before anything is loaded."""
    path = Path(run_dir) / CHECKPOINT
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
            loss_sum=meta["loss_sum"], state=_state_from(meta["state"], tensors), optimizer=optimizer,
            rng=tensors["rng"], rank_rngs=tuple(tensors[f"rng.{r}"] for r in range(meta.get("rank_rngs", 0))),
        )
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, ValueError, TypeError,
            SafetensorError, RuntimeError) as err:
        raise LooplmError(f"the checkpoint in {path} is damaged ({err}): resume is not possible, retrain") from None
    if missing or unexpected:
        raise LooplmError(f"the checkpoint in {path} does not match the model: missing {missing}, unexpected {unexpected}")
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
        path = self.run_dir / CHECKPOINT
        if not learn.dist.is_main:
            raise KeyboardInterrupt
        if not path.exists():
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
