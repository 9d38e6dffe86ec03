"""One training run from settings: data -> batches -> model -> learner -> run directory.

This is what ``looplm train`` calls, and what the chapter report calls seven times.
"""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from looplm import __version__
from looplm.callbacks import ARTAR, Callback, GradientClip
from looplm.data.batching import stream_batches
from looplm.data.corpus import Corpus
from looplm.data.sources import DataOptions, load_corpus
from looplm.data.text import TextCorpus
from looplm.data.tokenize import save_tokenizer, tokenizer_for
from looplm.device import resolve_device, seed_everything
from looplm.distributed import DistOptions, Distributed, setup
from looplm.errors import LooplmError
from looplm.finite import check_weights
from looplm.learner import Learner
from looplm.models.registry import model_spec
from looplm.plots import plot_curves
from looplm.checkpoint import Checkpointer, load_checkpoint, stop_on_sigint
from looplm.outputs import RUN, Output
from looplm.rundir import CURVES, save_run
from looplm.strategies import TBPTT, Chunks, Strategy, VariableChunks, Windows

TBPTT_MODES = ("stored", "recompute")


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
    # how the training stream becomes updates (at most one of these; none: chunks of sl)
    k1: int | None = None  # TBPTT(k1, k2): an update every k1 steps ...
    k2: int | None = None  # ... backpropagating k2 steps (either alone: the other is sl)
    tbptt_mode: str = "stored"  # or "recompute"
    overlap: int = 0  # stateless windows of sl steps, each sharing `overlap` steps with the last
    burn_in: int = 0  # stateless windows of sl steps, the first `burn_in` without gradient
    variable_sl: bool = False  # AWD-LSTM's random sequence lengths around sl

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
        chosen = [name for name, on in (("--k1/--k2", self.k1 is not None or self.k2 is not None),
                                        ("--overlap", self.overlap > 0), ("--burn-in", self.burn_in > 0),
                                        ("--variable-sl", self.variable_sl)) if on]
        if len(chosen) > 1:
            raise LooplmError(f"{' and '.join(chosen)} are different training strategies: choose one")
        for name, value in (("--k1", self.k1), ("--k2", self.k2)):
            if value is not None and value < 1:
                raise LooplmError(f"{name} must be at least 1, got {value}")
        if self.tbptt_mode not in TBPTT_MODES:
            raise LooplmError(f"--tbptt-mode must be one of {', '.join(TBPTT_MODES)}, got {self.tbptt_mode!r}")
        if self.overlap < 0 or self.burn_in < 0:
            raise LooplmError(f"--overlap and --burn-in must not be negative, got {self.overlap}, {self.burn_in}")
        if self.overlap >= self.sl and self.overlap:
            raise LooplmError(f"--overlap {self.overlap} must be smaller than the window --sl {self.sl}")
        if self.burn_in >= self.sl and self.burn_in:
            raise LooplmError(f"a burn-in of {self.burn_in} steps leaves nothing to train in windows of "
                              f"--sl {self.sl}: use a larger --sl or a smaller --burn-in")

    def strategy(self) -> Strategy:
        """The training strategy these settings ask for (see :mod:`looplm.strategies`)."""
        if self.k1 is not None or self.k2 is not None:
            return TBPTT(self.k1 or self.sl, self.k2 or self.sl, self.tbptt_mode)
        if self.overlap:
            return Windows(self.sl, overlap=self.overlap)
        if self.burn_in:
            return Windows(self.sl, burn=self.burn_in)
        if self.variable_sl:
            return VariableChunks(seed=self.seed)
        return Chunks()


@dataclass
class TrainResult:
    learner: Learner
    corpus: Corpus
    config: TrainConfig


def build_learner(cfg: TrainConfig, corpus: Corpus, log: Callable[[str], None] | None, progress: bool,
                  dist: Distributed | None = None) -> Learner:
    """The learner of ``cfg`` for this process's place in the job ``dist`` (default: a single
    process on ``cfg.device``): its rows of the train and valid layouts, rank 0's weights."""
    dist = Distributed(resolve_device(cfg.device)) if dist is None else dist
    spec = model_spec(cfg.model)
    if spec.fixed_sl is not None and cfg.sl != spec.fixed_sl:
        raise LooplmError(f"model {cfg.model} reads exactly {spec.fixed_sl} tokens: use --sl {spec.fixed_sl}")
    strategy = cfg.strategy()
    if spec.layout != "every" and not isinstance(strategy, Chunks):
        raise LooplmError(f"model {cfg.model} predicts only after the last step of a chunk: TBPTT, windows "
                          "and variable lengths need a model with a prediction at every step (lm4 on)")
    seed_everything(cfg.seed)
    train, valid = corpus.batches(cfg.bs, cfg.sl, spec.layout, group=cfg.group, rank=dist.rank,
                                  world_size=dist.world_size)
    model = spec.build(spec.make_config(len(corpus.vocab), **cfg.model_config))
    dist.join_model(model, cfg.seed)
    return Learner(model, train, valid, wd=cfg.wd, device=dist.device, log=log, progress=progress,
                   strategy=strategy, dist=dist)


class ShuffleDocuments(Callback):
    """Before each epoch, lay the train stream out again with its documents in a new order
    (:meth:`TextCorpus.train_tokens`); the order depends only on the seed and the epoch,
    so a resumed run, and every rank of a data-parallel job, sees the same one.

    ``bs`` is the global batch size and ``group`` the layout's (see
    :func:`stream_batches`); rank ``rank`` of ``world_size`` keeps its own rows."""

    def __init__(self, corpus: TextCorpus, bs: int, group: bool = True, rank: int = 0, world_size: int = 1):
        self.corpus, self.bs, self.group, self.rank, self.world_size = corpus, bs, group, rank, world_size

    def before_epoch(self, learn) -> None:
        old = learn.train_data
        tokens = self.corpus.train_tokens(learn.epoch)
        learn.train_data = stream_batches(tokens, self.bs, old.sl, old.layout, self.rank, self.world_size,
                                     self.group).to(learn.device)


def data_callbacks(corpus: Corpus, bs: int, group: bool = True, rank: int = 0,
                   world_size: int = 1) -> list[Callback]:
    """The callbacks a corpus asks of training (document shuffling, when asked for)."""
    if isinstance(corpus, TextCorpus) and corpus.shuffle_seed is not None and len(corpus.doc_starts) > 1:
        return [ShuffleDocuments(corpus, bs, group, rank, world_size)]
    return []


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
    out: str | Path | Output | None = None,
    corpus: Corpus | None = None,
    log: Callable[[str], None] | None = print,
    progress: bool = True,
    resume: bool = False,
    cbs: Sequence[Callback] = (),
    dist_options: DistOptions | None = None,
) -> TrainResult:
    """Train one model with one-cycle; with ``out``, keep a run directory there
    (config and vocab first, a checkpoint after every epoch and on Ctrl-C, the
    weights, metrics and curves at the end). ``resume`` continues from its checkpoint.

    Started by torchrun, this process is one rank of a data-parallel job
    (:mod:`looplm.distributed`): only rank 0 prints and writes ``out``."""
    cfg.validate()
    dist = setup(cfg, dist_options)
    if not dist.is_main:
        log, progress = None, False
    output = out if isinstance(out, Output) or out is None or resume else Output(out, RUN)  # checked, not written
    out = output.path if isinstance(output, Output) else out
    if corpus is None:  # rank 0 fills the cache first
        corpus = dist.main_first(lambda: load_corpus(cfg.data, cfg.data_options))
    learner = build_learner(cfg, corpus, log, progress, dist)
    cbs = [*callbacks_for(cfg), *cbs, *data_callbacks(corpus, cfg.bs, cfg.group, dist.rank, dist.world_size)]
    learner.check_fit(cfg.epochs, cfg.lr, cbs)  # the last refusal: nothing is written before it
    snapshot = None
    if resume:  # the run's own files stay as they are; a checkpoint that does not load stops here
        snapshot = dist.main_only(lambda: load_checkpoint(out, learner.model))
        dist.broadcast_module(learner.model)  # the weights rank 0 loaded
    checkpointer = None if out is None else Checkpointer(out)
    if out is not None:
        config = run_config(cfg, learner.model.config)
        if not resume:
            dist.main_only(lambda: _start_run(output, corpus, config))
        cbs.append(checkpointer)
    with stop_on_sigint(checkpointer) if checkpointer else nullcontext():
        learner.fit_one_cycle(cfg.epochs, cfg.lr, wd=cfg.wd, moms=cfg.moms, cbs=cbs, resume=snapshot)
    if out is not None and dist.is_main:
        check_weights(learner.model, cfg.epochs)  # never saved as a success
        history = [m.as_dict() for m in learner.history]
        save_run(out, learner.model, corpus.vocab, config, history)
        plot_curves(history, Path(out) / CURVES, title=f"{cfg.model} on {cfg.data}")
    dist.close()
    return TrainResult(learner, corpus, cfg)


def _start_run(output: Output, corpus: Corpus, config: dict[str, Any]) -> None:
    """The run directory before the first epoch (created only now, every check passed):
    config, vocab, and the tokenizer, so that eval and generate read text as training did."""
    out = output.create()
    save_run(out, None, corpus.vocab, config, [])
    save_tokenizer(tokenizer_for(corpus), out)
