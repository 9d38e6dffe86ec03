"""One training run from settings: data -> batches -> model -> learner -> run directory.

This is what ``looplm train`` calls, and what the chapter report calls seven times.
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from torch import Tensor

from looplm.budget import BudgetPlan, KeepDeadline, deadline_margin, plan_budget
from looplm.callbacks import ARTAR, Callback, GradientClip
from looplm.data.batching import n_samples, stream_batches
from looplm.data.corpus import Corpus
from looplm.data.sources import load_corpus
from looplm.data.text import TextCorpus
from looplm.data.tokenize import save_tokenizer, tokenizer_for
from looplm.device import resolve_device, seed_everything
from looplm.distributed import DistOptions, Distributed, setup
from looplm.errors import LooplmError
from looplm.finite import check_weights
from looplm.evaluate import per_text, scored_text_size, text_size
from looplm.fingerprint import fingerprint, save_fingerprint
from looplm.learner import Learner
from looplm.models.registry import model_spec
from looplm.plots import plot_curves
from looplm.precision import resolve_precision
from looplm.checkpoint import Checkpointer, load_checkpoint, stop_on_sigint
from looplm.outputs import RUN, Output
from looplm.rundir import CURVES, save_run
from looplm.runconfig import TBPTTSpec, TrainConfig, VariableSpec, WindowsSpec, config_to_dict, write_config
from looplm.strategies import TBPTT, Chunks, Strategy, VariableChunks, Windows

def strategy_for(cfg: TrainConfig) -> Strategy:
    """The training strategy ``cfg`` asks for (see :mod:`looplm.strategies`)."""
    spec = cfg.strategy
    if isinstance(spec, TBPTTSpec):
        return TBPTT(spec.k1 or cfg.sl, spec.k2 or cfg.sl, spec.mode)
    if isinstance(spec, WindowsSpec):
        return Windows(cfg.sl, overlap=spec.overlap) if spec.overlap else Windows(cfg.sl, burn=spec.burn_in)
    if isinstance(spec, VariableSpec):
        return VariableChunks(seed=cfg.seed, bucket=spec.bucket)
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
    strategy = strategy_for(cfg)
    if spec.layout != "every" and not isinstance(strategy, Chunks):
        raise LooplmError(f"model {cfg.model} predicts only after the last step of a chunk: TBPTT, windows "
                          "and variable lengths need a model with a prediction at every step (lm4 on)")
    seed_everything(cfg.seed)
    train, valid = corpus.batches(cfg.bs, cfg.sl, spec.layout, group=cfg.group, rank=dist.rank,
                                  world_size=dist.world_size)
    model_config = spec.make_config(len(corpus.vocab), **cfg.model_config)
    spec.check_fits_memory(model_config)
    model = spec.build(model_config)
    dist.join_model(model, cfg.seed)
    precision = resolve_precision(cfg.precision, dist.device, model)
    return Learner(model, train, valid, wd=cfg.wd, device=dist.device, log=log, progress=progress,
                   strategy=strategy, dist=dist, precision=precision)


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
    started = time.monotonic()
    cfg.validate()
    dist = setup(cfg, dist_options)
    if not dist.is_main:
        log, progress = None, False
    output = out if isinstance(out, Output) or out is None or resume else Output(out, RUN)  # checked, not written
    out = output.path if isinstance(output, Output) else out
    if corpus is None:  # rank 0 fills the cache first
        corpus = dist.main_first(lambda: load_corpus(cfg.data, cfg.data_options))
    learner = build_learner(cfg, corpus, log, progress, dist)
    if log is not None:
        log(learner.precision.reason)
    cfg = dataclasses.replace(cfg, precision=learner.precision.name)  # a resumed run trains the same way
    cbs = [*callbacks_for(cfg), *cbs, *data_callbacks(corpus, cfg.bs, cfg.group, dist.rank, dist.world_size)]
    learner.check_fit(cfg.epochs, cfg.lr, cbs)
    keeper = None
    if cfg.time_budget is not None and cfg.budget is None:  # planned once; a resumed run follows the plan
        cfg, keeper = plan_run(cfg, learner, callbacks_for(cfg), started, log)  # the last refusal
        cbs.append(keeper)
    snapshot = None
    if resume:  # the run's own files stay as they are; a checkpoint that does not load stops here
        # rank 0 first, then every rank reads the checkpoint itself (nothing is sent pickled)
        snapshot = dist.main_first(lambda: load_checkpoint(out, learner.model, cfg.bs))
        dist.broadcast_module(learner.model)  # the weights rank 0 loaded
    checkpointer = None if out is None else Checkpointer(out)
    if out is not None:
        if not resume:
            config = config_to_dict(cfg, learner.model.config)
            dist.main_only(lambda: _start_run(output, corpus, config, cfg))
        if keeper is not None and dist.is_main:  # a resumed run follows a shortened plan
            keeper.on_change = lambda plan: write_config(out, config_to_dict(with_plan(cfg, plan), learner.model.config))
        cbs.append(checkpointer)
    with stop_on_sigint(checkpointer) if checkpointer else nullcontext():
        learner.fit_one_cycle(cfg.epochs, cfg.lr, wd=cfg.wd, moms=cfg.moms, cbs=cbs, resume=snapshot,
                              max_updates=cfg.budget["total_updates"] if cfg.budget else None)
    if keeper is not None:
        cfg = with_plan(cfg, keeper.plan)
    if out is not None and dist.is_main:
        _finish_run(out, learner, corpus, cfg)
    dist.close()
    return TrainResult(learner, corpus, cfg)


def scored_valid_text(cfg: TrainConfig, corpus: Corpus,
                      valid_targets: Tensor | None = None) -> tuple[int, int, int] | None:
    """(tokens, characters, UTF-8 bytes) of the valid text the table scores: positions 1..n of
    the valid stream, or for a "last" layout (lm1-lm3, one target per sample) the text of
    ``valid_targets`` (the learner's valid targets; None: not known)."""
    tok = tokenizer_for(corpus)
    if model_spec(cfg.model).layout == "every":
        valid = corpus.split(cfg.sl)[1]
        n = n_samples(len(valid), cfg.sl) // cfg.bs * cfg.bs * cfg.sl
        return (n, *text_size(tok, valid, n))
    if valid_targets is None:
        return None
    return (valid_targets.numel(), *scored_text_size(tok, valid_targets.cpu()))


def with_text_units(history: list[dict], cfg: TrainConfig, corpus: Corpus,
                    valid_targets: Tensor | None = None) -> list[dict]:
    """Each epoch's valid loss also per character and in bits per byte of the valid text the
    table scored (:func:`scored_valid_text`)."""
    size = scored_valid_text(cfg, corpus, valid_targets) if history else None
    if size is None:
        return history
    return [{**row, **per_text(row["valid_loss"], *size)} for row in history]


def with_plan(cfg: TrainConfig, plan: BudgetPlan) -> TrainConfig:
    """``cfg`` training as ``plan`` says: its ``epochs`` are the epochs started, the last perhaps cut short."""
    return dataclasses.replace(cfg, epochs=plan.epochs, budget=dataclasses.asdict(plan))


def plan_run(cfg: TrainConfig, learner: Learner, cbs: Sequence[Callback], started: float,
             log: Callable[[str], None] | None) -> tuple[TrainConfig, KeepDeadline]:
    """``cfg`` with the updates that fit in its time budget (:mod:`looplm.budget`), ``cfg.epochs``
    at most, counted from ``started`` (a ``time.monotonic()`` value); and the callback that
    keeps the run to that deadline."""
    budget_s = cfg.time_budget * 60
    plan = plan_budget(learner, cfg.time_budget, cfg.lr, time.monotonic() - started, cbs, max_epochs=cfg.epochs)
    if log is not None:
        log(plan.describe())
    return with_plan(cfg, plan), KeepDeadline(plan, started + budget_s - deadline_margin(budget_s), log=log)


def _finish_run(out: str | Path, learner: Learner, corpus: Corpus, cfg: TrainConfig) -> None:
    """The weights, config (with a shortened plan, if any), metrics and curves of a finished run."""
    check_weights(learner.model, cfg.epochs)  # never saved as a success
    history = with_text_units([m.as_dict() for m in learner.history], cfg, corpus, learner.valid_data.targets)
    save_run(out, learner.model, corpus.vocab, config_to_dict(cfg, learner.model.config), history)
    plot_curves(history, Path(out) / CURVES, title=f"{cfg.model} on {cfg.data}")


def _start_run(output: Output, corpus: Corpus, config: dict[str, Any], cfg: TrainConfig) -> None:
    """The run directory before the first epoch (created only now, every check passed):
    config, vocab, the tokenizer (eval and generate read text as training did) and the data's
    fingerprint (resume and eval refuse data that changed)."""
    out = output.create()
    save_run(out, None, corpus.vocab, config, [])
    save_tokenizer(tokenizer_for(corpus), out)
    save_fingerprint(out, fingerprint(corpus, cfg.data, cfg.data_options.valid))
