r"""The bor-bor-zan seed notebook's seven models, trained with its settings over several seeds.

The notebook (fastai, 100,000 random,random games, bs 128) cuts its stream two ways.

LMModel1-3, samples of 6 tokens cut every 6 tokens, the target the token after each::

    stream:  t0 t1 t2 t3 t4 t5 | t6 t7 t8 t9 t10 t11 | t12 ...
    sample 0: x = t0..t5, y = t6      sample 1: x = t6..t11, y = t12  ...

    LMModel1 reads x[:, 0..2] only: it sees t0 t1 t2 and must name t6 (4 tokens later);
    LMModel2 and LMModel3 loop over all 6 tokens.

The samples go to the batches in stream order (no ``group_chunks``: batch k, row j is
sample k*128 + j), so LMModel3's carried state comes from an unrelated sample 768 tokens
earlier. The stride of 6 keeps every target on an even stream position (a game is
4 tokens per pair plus "end ."), which is always a move or "end": the hard tokens.

LMModel4 to LModel7 read the stream in sl=6 chunks laid into 128 continuing rows
(``group_chunks``), with a target after every token (``looplm.data.batching``).

Per model (epochs, lr): lm1, lm2 (4, 1e-3); lm3 (4, 1e-2); lm4, lm5 (5, 3e-3; lm5 has 3
layers); lm6 (5, 1e-2, n_hidden 128); lm7 (5, 1e-2, n_hidden 64, dropout 0.4, wd 0.1,
``TextLearner``'s moms 0.8/0.7/0.8, and no AR/TAR: see NOTEBOOK_RUNS). All one-cycle,
fastai's default wd 0.01 elsewhere. The games are fixed (data seed 0); ``seeds`` vary the training.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from looplm.data.batching import StreamBatches
from looplm.data.corpus import Corpus
from looplm.data.sources import DataOptions, load_corpus
from looplm.data.batching import n_samples
from looplm.errors import LooplmError
from looplm.games.optimum import stream_truth
from looplm.games.view import ViewLimit, scored_view, view_limit
from looplm.models.registry import model_spec
from looplm.reproduce.pool import run_tasks
from looplm.reproduce.report import environment_line
from looplm.training import TrainConfig, TrainResult, scored_valid_text, train

SAMPLE_LEN = 6  # the notebook's samples: 6 tokens in, the 7th is the target
BS = 128


@dataclass(frozen=True)
class NotebookRun:
    model: str
    title: str
    epochs: int
    lr: float
    sl: int  # tokens the model reads per sample / chunk
    notebook_loss: float  # final valid loss printed in the notebook
    notebook_accuracy: float
    n_hidden: int = 64
    n_layers: int = 2
    wd: float = 0.01
    moms: tuple[float, float, float] = (0.95, 0.85, 0.95)
    alpha: float = 0.0
    beta: float = 0.0
    group: bool = True
    dropout: str = "torch"  # lm7: "scratch" uses looplm.nn.Dropout

    @property
    def stateless_view(self) -> bool:
        """The model sees only its sample (lm1-3), not the game so far."""
        return not self.group

    def config(self, seed: int, device: str, games: int, precision: str = "auto") -> TrainConfig:
        fields = {f.name for f in dataclasses.fields(model_spec(self.model).config_cls)}
        wanted = {"n_hidden": self.n_hidden, "n_layers": self.n_layers, "p": 0.4, "dropout": self.dropout}
        model_config = {k: v for k, v in wanted.items() if k in fields}  # lm1-4: no layers; only lm7 drops out
        return TrainConfig(
            data="borborzan", model=self.model, epochs=self.epochs, lr=self.lr, wd=self.wd, bs=BS, sl=self.sl,
            seed=seed, alpha=self.alpha, beta=self.beta, moms=self.moms, device=device, group=self.group,
            data_options=DataOptions(games=games, players="random,random", seed=0), model_config=model_config,
            precision=precision,
        )


NOTEBOOK_RUNS: tuple[NotebookRun, ...] = (
    NotebookRun("lm1", "LMModel1", 4, 1e-3, 3, 1.4191, 0.3026, group=False),
    NotebookRun("lm2", "LMModel2", 4, 1e-3, 6, 1.1823, 0.3726, group=False),
    NotebookRun("lm3", "LMModel3", 4, 1e-2, 6, 1.1833, 0.3721, group=False),
    NotebookRun("lm4", "LMModel4", 5, 3e-3, 6, 0.5681, 0.6846),
    NotebookRun("lm5", "LMModel5", 5, 3e-3, 6, 0.5700, 0.6846, n_layers=3),
    NotebookRun("lm6", "LModel6", 5, 1e-2, 6, 0.5683, 0.6846, n_hidden=128),
    # The notebook's TextLearner(alpha=2, beta=1) trained without AR and TAR: the fastai of its
    # time (up to 2.8.3) built TextLearner's callbacks with rnn_cbs() and its zero defaults, and
    # dropped both. What ran is what is reproduced: dropout 0.4, wd 0.1, moms 0.8/0.7/0.8.
    NotebookRun("lm7", "LModel7", 5, 1e-2, 6, 0.5682, 0.6848, wd=0.1, moms=(0.8, 0.7, 0.8)),
)


def first_of_samples(batches: StreamBatches, reads: int) -> StreamBatches:
    """Keep the first ``reads`` tokens of every sample of a "last" layout (the targets stay):
    LMModel1's ``x[:, 0..2]`` of the notebook's 6-token samples. (bs, m*sl) -> (bs, m*reads)."""
    bs, width = batches.inputs.shape
    inputs = batches.inputs.reshape(bs, width // batches.sl, batches.sl)[:, :, :reads].reshape(bs, -1)
    return StreamBatches(inputs, batches.targets, reads, batches.layout)


@dataclass(frozen=True)
class NotebookCorpus(Corpus):
    """The bor-bor-zan corpus, its "last" samples cut every ``SAMPLE_LEN`` tokens whatever
    the model reads (see the module diagram); the "every" layout is the usual one."""

    def batches(self, bs: int, sl: int, layout: str, rank: int = 0, world_size: int = 1,
                group: bool = True) -> tuple[StreamBatches, StreamBatches]:
        if layout != "last" or sl >= SAMPLE_LEN:
            return super().batches(bs, sl, layout, rank, world_size, group)
        full = super().batches(bs, SAMPLE_LEN, layout, rank, world_size, group)
        return tuple(first_of_samples(b, sl) for b in full)  # type: ignore[return-value]


def notebook_corpus(games: int) -> NotebookCorpus:
    c = load_corpus("borborzan", DataOptions(games=games, players="random,random", seed=0))
    return NotebookCorpus(c.name, c.vocab, c.tokens, c.n_lines, c.valid_pct, c.valid_tokens)


@dataclass
class RunResult:
    run: NotebookRun
    losses: dict[int, list[float]] = field(default_factory=dict)  # seed -> valid loss per epoch
    accuracies: dict[int, list[float]] = field(default_factory=dict)
    seconds: dict[int, float] = field(default_factory=dict)
    text: dict[str, int] = field(default_factory=dict)  # the scored valid text: tokens, chars, bytes

    def bits_per_byte(self, loss: float) -> float:
        """A mean valid loss (nats/token) in bits per UTF-8 byte of the text it scored."""
        return loss * self.text["tokens"] / math.log(2) / self.text["bytes"]


@dataclass
class BorborzanResult:
    seeds: list[int]
    games: int
    runs: list[RunResult]
    limits: dict[str, dict]  # model -> optimum / view limit on its scored positions (looplm.games.view)
    entropies: dict[int, dict]  # tokens seen -> H(T | V) over fresh games, with its standard error
    epochs: int | None = None  # every model trained this many epochs instead of the notebook's
    environment: str = ""  # versions, machine and threads of the run (the report's first line)


def select_runs(only: list[str] | None, epochs: int | None, dropout: str) -> tuple[NotebookRun, ...]:
    """The notebook's runs (those named in ``only``), cut to ``epochs``, lm7 with ``dropout``."""
    names = [run.model for run in NOTEBOOK_RUNS]
    for name in only or ():
        if name not in names:
            raise LooplmError(f"unknown run {name!r} for --only: choose from {', '.join(names)}")
    if only is not None and not only:
        raise LooplmError(f"--only names no run: choose from {', '.join(names)}")
    runs = tuple(run for run in NOTEBOOK_RUNS if only is None or run.model in only)
    if epochs is not None:
        runs = tuple(replace(run, epochs=epochs) for run in runs)
    return tuple(replace(run, dropout=dropout) if run.model == "lm7" else run for run in runs)


@dataclass(frozen=True)
class NotebookTask:
    """One training run of the reproduction: a notebook model under one seed."""

    run: NotebookRun
    seed: int
    device: str
    games: int
    precision: str
    progress: bool = False

    def cost(self) -> float:
        """A guess at its time, to start the longest runs first: epochs, then the later (larger) models."""
        return self.run.epochs * 100 + [r.model for r in NOTEBOOK_RUNS].index(self.run.model)


@dataclass(frozen=True)
class NotebookOutcome:
    losses: list[float]  # valid loss per epoch
    accuracies: list[float]
    seconds: float
    text: dict[str, int]


@functools.cache
def _games(games: int) -> NotebookCorpus:
    return notebook_corpus(games)  # once per process: the parent and each worker simulate the same games


def train_notebook_task(task: NotebookTask) -> NotebookOutcome:
    """Train one run on the notebook's games; what the report needs of it (it crosses processes)."""
    corpus, cfg = _games(task.games), task.run.config(task.seed, task.device, task.games, task.precision)
    start = time.perf_counter()
    trained = train(cfg, corpus=corpus, log=None, progress=task.progress)
    seconds = time.perf_counter() - start
    history = trained.learner.history
    return NotebookOutcome([m.valid_loss for m in history], [m.accuracy for m in history], seconds,
                           scored_text(trained, cfg, corpus))


def reproduce_borborzan(
    seeds: list[int], games: int = 100_000, device: str = "auto", log: Callable[[str], None] = print,
    progress: bool = True, only: list[str] | None = None, epochs: int | None = None,
    dropout: str = "torch", limit_games: int = 400_000, precision: str = "auto", jobs: int = 1,
) -> BorborzanResult:
    """Train each selected notebook model once per seed (``jobs`` at a time, see
    :mod:`looplm.reproduce.pool`); compute the two limits of each."""
    runs = select_runs(only, epochs, dropout)
    for run in runs:
        run.config(seeds[0], device, games, precision).validate()  # fail before training, not after
    corpus = _games(games)
    results = {run.model: RunResult(run) for run in runs}
    tasks = [NotebookTask(run, seed, device, games, precision, progress and jobs == 1) for seed in seeds for run in runs]
    for task, outcome in run_tasks(train_notebook_task, tasks, jobs, cost=NotebookTask.cost):
        result = results[task.run.model]
        result.losses[task.seed], result.accuracies[task.seed] = outcome.losses, outcome.accuracies
        result.seconds[task.seed], result.text = outcome.seconds, outcome.text
        log(f"seed {task.seed}  {task.run.title:<10} valid loss {outcome.losses[-1]:.4f}  "
            f"accuracy {outcome.accuracies[-1]:.4f}  {outcome.seconds:6.1f} s")
    limits, entropies = limits_of(corpus.valid_tokens.numpy(), runs, limit_games)
    return BorborzanResult(seeds, games, list(results.values()), limits, entropies, epochs,
                           environment_line(seeds, jobs))


def scored_text(trained: TrainResult, cfg: TrainConfig, corpus: Corpus) -> dict[str, int]:
    """Tokens, characters and UTF-8 bytes of the valid text the table scored (the game log
    written out, a space before each token)."""
    n, n_chars, n_bytes = scored_valid_text(cfg, corpus, trained.learner.valid_data.targets)
    return {"tokens": n, "chars": n_chars, "bytes": n_bytes}


def limits_of(valid: np.ndarray, runs: tuple[NotebookRun, ...], limit_games: int) -> tuple[dict, dict]:
    """Per model, on the valid targets its table scores: the exact optimum given the whole
    game so far and, for the models that see only their sample, the best loss with that view.
    Also each view's H(T | V) from ``limit_games`` fresh games (``looplm.games.view``)."""
    views: dict[int, ViewLimit] = {}
    out: dict[str, dict] = {}
    probs = None
    for run in runs:
        if run.stateless_view:
            if run.sl not in views:
                views[run.sl] = view_limit(run.sl, SAMPLE_LEN, SAMPLE_LEN, n_games=limit_games, also=valid)
            used = n_samples(len(valid), SAMPLE_LEN) // BS * BS
            out[run.model] = scored_view(valid, views[run.sl], np.arange(used) * SAMPLE_LEN, SAMPLE_LEN)
        else:  # the state carries the whole stream: only the exact optimum bounds it
            probs = stream_truth(valid).probs if probs is None else probs
            used = n_samples(len(valid), run.sl) // BS * BS * run.sl
            rows = np.arange(1, used + 1)
            out[run.model] = {"optimal_loss": float(-np.mean(np.log(probs[rows, valid[rows]]))),
                              "optimal_accuracy": float(np.mean(probs[rows].argmax(1) == valid[rows]))}
    entropies = {reads: {"entropy": v.entropy, "stderr": v.stderr, "n_samples": v.n_samples,
                         "n_games": v.n_games, "chunks": v.chunks, "n_views": len(v.table.keys)}
                 for reads, v in views.items()}
    return out, entropies
