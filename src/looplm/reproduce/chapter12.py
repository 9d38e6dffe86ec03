"""The chapter's seven models with the chapter's settings, over one or more seeds.

Settings are the chapter's: bs 64, n_hidden 64, sl 3 (lm1-lm3) or 16, its
epochs and learning rates, fastai's default wd 0.01 (0.1 for LModel7), and
LModel7 trained as ``TextLearner`` does (AR alpha=2, TAR beta=1, beta1 cycled
0.8 -> 0.7 -> 0.8, dropout 0.4).

``extra=True`` adds the chapter's exercise "compare with PyTorch's GRU": LModel6's
setup with ``torch.nn.GRU``, ``looplm.nn.GRU`` and ``looplm.nn.LSTM`` in place of its
LSTM (:data:`EXTRA_RECIPES`), and checks that each from-scratch model starts from the
same weights as its built-in twin (:data:`TWINS`).
"""

from __future__ import annotations

import dataclasses

import statistics
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import torch

from looplm.data.sources import load_corpus
from looplm.errors import LooplmError
from looplm.evaluate import error_analysis, predict_stream
from looplm.models.registry import build_model, model_spec
from looplm.reproduce.pool import run_tasks, threads_per_job
from looplm.training import TrainConfig, train, with_text_units


MODEL_CONFIG = {"n_hidden": 64, "n_layers": 2, "p": 0.4}  # the chapter's sizes; each model takes those it has


def chapter_sizes(model: str) -> dict:
    """The chapter's sizes that ``model``'s config has (lm1-lm4: no layers, no dropout)."""
    fields = {f.name for f in dataclasses.fields(model_spec(model).config_cls)}
    return {k: v for k, v in MODEL_CONFIG.items() if k in fields}


@dataclass(frozen=True)
class ChapterRecipe:
    model: str
    title: str
    epochs: int
    lr: float
    sl: int
    book: float | None  # final valid accuracy printed in the book (None: not in the book)
    fastai_cpu: float | None  # mean final valid accuracy of fastai 2.8.12 on a 2-core CPU, seeds 0, 1, 2
    wd: float = 0.01
    moms: tuple[float, float, float] = (0.95, 0.85, 0.95)
    alpha: float = 0.0
    beta: float = 0.0
    group: bool = True  # the chapter groups samples into continuing rows from LMModel3 on
    extra: bool = False  # not one of the chapter's seven models (``--extra``)

    def config(self, seed: int, device: str, precision: str = "auto") -> TrainConfig:
        return TrainConfig(
            data="human-numbers", model=self.model, epochs=self.epochs, lr=self.lr, wd=self.wd, bs=64, sl=self.sl,
            seed=seed, alpha=self.alpha, beta=self.beta, moms=self.moms, device=device, group=self.group,
            model_config=chapter_sizes(self.model), precision=precision,
        )


CHAPTER_RECIPES: tuple[ChapterRecipe, ...] = (
    ChapterRecipe("lm1", "LMModel1", 4, 1e-3, 3, 0.494, 0.467, group=False),
    ChapterRecipe("lm2", "LMModel2", 4, 1e-3, 3, 0.470, 0.467, group=False),
    ChapterRecipe("lm3", "LMModel3", 10, 3e-3, 3, 0.589, 0.577),
    ChapterRecipe("lm4", "LMModel4", 15, 3e-3, 16, 0.640, 0.635),
    ChapterRecipe("lm5", "LMModel5", 15, 3e-3, 16, 0.488, 0.530),
    ChapterRecipe("lm6", "LModel6", 15, 1e-2, 16, 0.758, 0.693),
    ChapterRecipe("lm7", "LModel7", 15, 1e-2, 16, 0.869, 0.873, wd=0.1, moms=(0.8, 0.7, 0.8), alpha=2.0, beta=1.0),
)

_LM6 = next(recipe for recipe in CHAPTER_RECIPES if recipe.model == "lm6")
EXTRA_RECIPES: tuple[ChapterRecipe, ...] = tuple(
    replace(_LM6, model=name, title=model_spec(name).title, book=None, fastai_cpu=None, extra=True)
    for name in ("lm6-gru", "lm6-scratch-gru", "lm6-scratch-lstm")
)
# (from scratch, PyTorch's built-in): the same model written twice
TWINS: tuple[tuple[str, str], ...] = (("lm6-scratch-gru", "lm6-gru"), ("lm6-scratch-lstm", "lm6"))


def select_recipes(extra: bool = False, only: list[str] | None = None) -> tuple[ChapterRecipe, ...]:
    """The chapter's runs, then the extra ones if asked; ``only`` keeps those named (in run order)."""
    runs = CHAPTER_RECIPES + (EXTRA_RECIPES if extra else ())
    if only is None:
        return runs
    names = [recipe.model for recipe in runs]
    if not only:
        raise LooplmError(f"--only names no run: choose from {', '.join(names)}")
    for name in only:
        if name not in names:
            hint = " (an extra run: add --extra)" if name in {recipe.model for recipe in EXTRA_RECIPES} else ""
            raise LooplmError(f"unknown run {name!r} for --only{hint}: choose from {', '.join(names)}")
    return tuple(recipe for recipe in runs if recipe.model in only)


def same_initial_weights(scratch: str, builtin: str, vocab_sz: int, seed: int) -> bool:
    """Whether the two models, built under the same seed, hold equal tensors under the same names."""
    torch.manual_seed(seed)
    a = build_model(scratch, vocab_sz, **chapter_sizes(scratch)).state_dict()
    torch.manual_seed(seed)
    b = build_model(builtin, vocab_sz, **chapter_sizes(builtin)).state_dict()
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


@dataclass
class ModelResult:
    recipe: ChapterRecipe
    curves: dict[int, list[float]] = field(default_factory=dict)  # seed -> valid accuracy per epoch
    seconds: dict[int, float] = field(default_factory=dict)
    errors: dict | None = None  # error analysis of the first seed
    bits_per_byte: dict[int, float] = field(default_factory=dict)  # seed -> final valid loss in bits per byte

    def finals(self) -> list[float]:
        return [c[-1] for c in self.curves.values()]

    def bests(self) -> list[float]:
        return [max(c) for c in self.curves.values()]

    @staticmethod
    def mean_std(values: list[float]) -> tuple[float, float]:
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


@dataclass
class Chapter12Result:
    seeds: list[int]
    baseline: float
    models: list[ModelResult]
    seconds_per_seed: dict[int, float]  # the seed's runs' own training times, summed
    epochs: int | None = None  # every model trained this many epochs instead of the chapter's
    same_init: dict[tuple[str, str], bool] = field(default_factory=dict)  # TWINS trained here -> equal start?
    jobs: int = 1  # runs trained side by side, in worker processes
    wall_seconds: float = 0.0  # from the first run's start to the last one's end


@dataclass(frozen=True)
class RunTask:
    """One training run of the reproduction: a recipe under one seed."""

    recipe: ChapterRecipe
    seed: int
    device: str
    precision: str
    analyse: bool  # make the error analysis (once per model, on the first seed)
    progress: bool = False

    def cost(self) -> float:
        """A guess at its time, to start the longest runs first: epochs, then the later (larger) models."""
        order = [r.model for r in CHAPTER_RECIPES + EXTRA_RECIPES]
        return self.recipe.epochs * 100 + order.index(self.recipe.model)


@dataclass(frozen=True)
class RunOutcome:
    curve: list[float]  # valid accuracy per epoch
    seconds: float
    bits_per_byte: float
    errors: dict | None


def train_task(task: RunTask) -> RunOutcome:
    """Train one run on Human Numbers; what the report needs of it (small: it crosses processes)."""
    corpus = load_corpus("human-numbers")
    start = time.perf_counter()
    trained = train(task.recipe.config(task.seed, task.device, task.precision), corpus=corpus, log=None,
                    progress=task.progress)
    seconds = time.perf_counter() - start
    history = trained.learner.history
    final = with_text_units([history[-1].as_dict()], trained.config, corpus, trained.learner.valid_data.targets)[0]
    errors = None
    if task.analyse:
        learner = trained.learner
        errors = error_analysis(predict_stream(learner.precision.wrap(learner.model), learner.valid_data), corpus.vocab)
    return RunOutcome([m.accuracy for m in history], seconds, final["bits_per_byte"], errors)


def reproduce_chapter12(
    seeds: list[int], device: str = "auto", log: Callable[[str], None] = print, progress: bool = True,
    extra: bool = False, only: list[str] | None = None, epochs: int | None = None, precision: str = "auto",
    jobs: int = 1,
) -> Chapter12Result:
    """Train each selected run once per seed; ``epochs`` cuts every run short for a quick look.

    ``jobs`` > 1 trains that many runs at once in worker processes that share this process's
    threads out (:mod:`looplm.reproduce.pool`); their progress bars are not shown.
    """
    runs = select_recipes(extra, only)
    if epochs is not None:
        runs = tuple(replace(recipe, epochs=epochs) for recipe in runs)
    for recipe in runs:
        recipe.config(seeds[0], device, precision).validate()  # fail before training, not after
    corpus = load_corpus("human-numbers")
    results = {recipe.model: ModelResult(recipe) for recipe in runs}
    trained_names = {recipe.model for recipe in runs}
    same_init = {twin: same_initial_weights(*twin, len(corpus.vocab), seeds[0])
                 for twin in TWINS if set(twin) <= trained_names}
    tasks = [RunTask(result.recipe, seed, device, precision, analyse=seed == seeds[0], progress=progress and jobs == 1)
             for seed in seeds for result in results.values()]
    start = time.perf_counter()
    for task, outcome in run_tasks(train_task, tasks, jobs, cost=RunTask.cost):
        result = results[task.recipe.model]
        result.curves[task.seed], result.seconds[task.seed] = outcome.curve, outcome.seconds
        result.bits_per_byte[task.seed] = outcome.bits_per_byte
        result.errors = outcome.errors if task.analyse else result.errors
        log(f"seed {task.seed}  {task.recipe.title:<20} final {outcome.curve[-1]:.4f}  "
            f"best {max(outcome.curve):.4f}  {outcome.seconds:5.1f} s")
    wall = time.perf_counter() - start
    seconds_per_seed = {seed: sum(r.seconds[seed] for r in results.values()) for seed in seeds}
    side_by_side = f" ({jobs} at a time, {threads_per_job(jobs)} thread(s) each)" if jobs > 1 else ""
    log(f"all {len(tasks)} runs in {wall:.1f} s{side_by_side}")
    return Chapter12Result(seeds, corpus.describe()["baseline_accuracy"], list(results.values()), seconds_per_seed,
                           epochs, same_init, jobs, wall)

