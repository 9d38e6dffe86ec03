"""One training run from settings: data -> batches -> model -> learner -> run directory.

This is what ``looplm train`` calls, and what the chapter report calls seven times.
"""

from __future__ import annotations

import dataclasses
import json
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from looplm import __version__
from looplm.callbacks import ARTAR, Callback, GradientClip
from looplm.data.corpus import Corpus
from looplm.data.sources import DataOptions, load_corpus
from looplm.data.text import data_callbacks  # issue 6
from looplm.data.tokenize import save_tokenizer, tokenizer_for  # issue 6
from looplm.device import resolve_device, seed_everything
from looplm.errors import LooplmError
from looplm.learner import Learner
from looplm.models.registry import model_spec
from looplm.plots import plot_curves
from looplm.checkpoint import Checkpointer, load_checkpoint, stop_on_sigint
from looplm.rundir import CONFIG, CURVES, prepare_out_dir, save_run


@dataclass
class TrainConfig:
    """Every setting of a training run; saved as ``config.json`` in the run directory."""

    data: str = "human-numbers"
    model: str = "lm7"
    epochs: int = 15
    lr: float = 1e-2
    wd: float = 0.01
    bs: int = 64
    sl: int = 16
    seed: int = 0
    alpha: float = 0.0
    beta: float = 0.0
    clip: float | None = None
    moms: tuple[float, float, float] = (0.95, 0.85, 0.95)
    device: str = "auto"
    data_options: DataOptions = field(default_factory=DataOptions)
    group: bool = True  # False: consecutive samples per batch (stateless lm1/lm2 as the chapter trains them)
    model_config: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.epochs < 1:
            raise LooplmError(f"--epochs must be at least 1, got {self.epochs}")
        if not self.lr > 0:
            raise LooplmError(f"--lr must be positive, got {self.lr}")
        if self.wd < 0:
            raise LooplmError(f"--wd must not be negative, got {self.wd}")
        if self.bs < 1 or self.sl < 1:
            raise LooplmError(f"--bs and --sl must be at least 1, got bs={self.bs}, sl={self.sl}")
        if self.clip is not None and not self.clip > 0:
            raise LooplmError(f"--clip must be positive, got {self.clip}")
        if self.alpha < 0 or self.beta < 0:
            raise LooplmError(f"--alpha and --beta must not be negative, got {self.alpha}, {self.beta}")


@dataclass
class TrainResult:
    learner: Learner
    corpus: Corpus
    config: TrainConfig


def build_learner(cfg: TrainConfig, corpus: Corpus, log: Callable[[str], None] | None, progress: bool) -> Learner:
    spec = model_spec(cfg.model)
    if spec.fixed_sl is not None and cfg.sl != spec.fixed_sl:
        raise LooplmError(f"model {cfg.model} reads exactly {spec.fixed_sl} tokens: use --sl {spec.fixed_sl}")
    seed_everything(cfg.seed)
    train, valid = corpus.batches(cfg.bs, cfg.sl, spec.layout, group=cfg.group)
    model = spec.build(spec.make_config(len(corpus.vocab), **cfg.model_config))
    return Learner(model, train, valid, wd=cfg.wd, device=resolve_device(cfg.device), log=log, progress=progress)


def callbacks_for(cfg: TrainConfig) -> list[Callback]:
    cbs: list[Callback] = []
    if cfg.alpha or cfg.beta:
        cbs.append(ARTAR(cfg.alpha, cfg.beta))
    if cfg.clip is not None:
        cbs.append(GradientClip(cfg.clip))
    return cbs


def run_config(cfg: TrainConfig, model_config: Any) -> dict[str, Any]:
    """What ``config.json`` holds: enough to rebuild the model, the data and the training."""
    return {
        "looplm_version": __version__,
        "model": cfg.model,
        "model_config": dataclasses.asdict(model_config),
        "train": dataclasses.asdict(cfg),
    }


def config_from_run(config: dict[str, Any]) -> TrainConfig:
    """The :class:`TrainConfig` saved in a run's ``config.json``."""
    try:
        settings = dict(config["train"])
        settings["data_options"] = DataOptions(**settings["data_options"])
        settings["moms"] = tuple(settings["moms"])
        return TrainConfig(**settings)
    except (KeyError, TypeError) as err:
        raise LooplmError(f"config.json does not hold looplm training settings ({err}): retrain") from None


def train(
    cfg: TrainConfig,
    out: str | Path | None = None,
    corpus: Corpus | None = None,
    log: Callable[[str], None] | None = print,
    progress: bool = True,
    resume: bool = False,
    cbs: Sequence[Callback] = (),
) -> TrainResult:
    """Train one model with one-cycle; with ``out``, keep a run directory there
    (config and vocab first, a checkpoint after every epoch and on Ctrl-C, the
    weights, metrics and curves at the end). ``resume`` continues from its checkpoint."""
    cfg.validate()
    if out is not None:
        prepare_out_dir(out)  # fail before training, not after
    corpus = corpus or load_corpus(cfg.data, cfg.data_options)
    learner = build_learner(cfg, corpus, log, progress)
    cbs = [*callbacks_for(cfg), *cbs, *data_callbacks(corpus)]  # issue 6: text corpora may shuffle documents
    checkpointer = None
    if out is not None:
        config = run_config(cfg, learner.model.config)
        save_run(out, None, corpus.vocab, config, [])
        save_tokenizer(tokenizer_for(corpus), out)  # issue 6: eval and generate read text as training did
        checkpointer = Checkpointer(out)
        cbs.append(checkpointer)
    snapshot = load_checkpoint(out, learner.model) if resume else None
    with stop_on_sigint(checkpointer) if checkpointer else nullcontext():
        learner.fit_one_cycle(cfg.epochs, cfg.lr, wd=cfg.wd, moms=cfg.moms, cbs=cbs, resume=snapshot)
    if out is not None:
        history = [m.as_dict() for m in learner.history]
        save_run(out, learner.model, corpus.vocab, config, history)
        plot_curves(history, Path(out) / CURVES, title=f"{cfg.model} on {cfg.data}")
    return TrainResult(learner, corpus, cfg)


def resume_training(run_dir: str | Path, log: Callable[[str], None] | None = print, progress: bool = True) -> TrainResult:
    """Continue the run in ``run_dir`` from its last checkpoint, with its own settings."""
    path = Path(run_dir) / CONFIG
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LooplmError(f"{run_dir} is not a run directory (no {CONFIG}): nothing to resume") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LooplmError(f"{path} is damaged ({err}): resume is not possible, retrain") from None
    return train(config_from_run(config), out=run_dir, log=log, progress=progress, resume=True)
