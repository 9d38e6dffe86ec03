r"""A run's settings, and ``config.json``, the one file that holds them (read and written here only).

    config.json (format 2)
    {
      "format": 2, "looplm_version": "0.1.0",
      "model":    {"name": "lm4", "vocab_sz": 30, "n_hidden": 64, "fast": true},   the model's own config
      "data":     {"name": "human-numbers"},                                       + the source's own options
      "training": {"epochs": 15, "lr": 0.003, ..., "precision": "fp32", "strategy": {"kind": "chunks"}}
    }

The training strategy is one tagged section: ``{"kind": "chunks"}``, ``{"kind": "tbptt", "k1": 4,
"k2": 8, "mode": "stored"}``, ``{"kind": "windows", "overlap": 4}`` or ``{"kind": "windows",
"burn_in": 4}``, ``{"kind": "variable"}``. Reading is strict (:mod:`looplm.strict`): an unknown
key, a missing one or a wrong type is one line naming it. Run directories of looplm 0.1 (no
"format": the settings under "train", the model's twice) are read too, and keep only what
their model and data source use.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Union

from looplm import __version__
from looplm.atomic import atomic_write_text
from looplm.data.sources import DataOptions, source_options
from looplm.errors import LooplmError
from looplm.files import read_json
from looplm.device import resolve_device
from looplm.models.registry import model_spec
from looplm.precision import check_precision
from looplm.strict import from_dict
from looplm.tbptt import MODES

FORMAT = 2
CONFIG = "config.json"


# -- the training strategy: one tagged section -------------------------------------------------
@dataclass(frozen=True)
class ChunksSpec:
    """One update per batch of ``sl`` steps, the state carried and detached (the chapter's)."""

    kind: ClassVar[str] = "chunks"

    def validate(self, sl: int) -> None:
        pass


@dataclass(frozen=True)
class TBPTTSpec:
    """TBPTT(k1, k2): an update every k1 steps backpropagating k2 (either left out: ``sl``)."""

    kind: ClassVar[str] = "tbptt"
    k1: int | None = None
    k2: int | None = None
    mode: str = "stored"  # or "recompute"

    def validate(self, sl: int) -> None:
        for name, value in (("--k1", self.k1), ("--k2", self.k2)):
            if value is not None and value < 1:
                raise LooplmError(f"{name} must be at least 1, got {value}")
        if self.mode not in MODES:
            raise LooplmError(f"--tbptt-mode must be one of {', '.join(MODES)}, got {self.mode!r}")


@dataclass(frozen=True)
class WindowsSpec:
    """Stateless windows of ``sl`` steps sharing ``overlap`` steps with the last one, or whose
    first ``burn_in`` steps run without gradient (one of the two)."""

    kind: ClassVar[str] = "windows"
    overlap: int = 0
    burn_in: int = 0

    def validate(self, sl: int) -> None:
        if self.overlap < 0 or self.burn_in < 0:
            raise LooplmError(f"--overlap and --burn-in must not be negative, got {self.overlap}, {self.burn_in}")
        if self.overlap and self.burn_in:
            raise LooplmError("--overlap and --burn-in are different training strategies: choose one")
        if self.overlap >= sl and self.overlap:
            raise LooplmError(f"--overlap {self.overlap} must be smaller than the window --sl {sl}")
        if self.burn_in >= sl and self.burn_in:
            raise LooplmError(f"a burn-in of {self.burn_in} steps leaves nothing to train in windows of "
                              f"--sl {sl}: use a larger --sl or a smaller --burn-in")


@dataclass(frozen=True)
class VariableSpec:
    """AWD-LSTM's random sequence lengths around ``sl``."""

    kind: ClassVar[str] = "variable"
    bucket: int = 1  # lengths rounded to multiples of this (the CLI's --sl-bucket: 8), so oneDNN meets few shapes

    def validate(self, sl: int) -> None:
        if self.bucket < 1:
            raise LooplmError(f"--sl-bucket must be at least 1, got {self.bucket}")


StrategySpec = Union[ChunksSpec, TBPTTSpec, WindowsSpec, VariableSpec]
STRATEGIES: dict[str, type] = {s.kind: s for s in (ChunksSpec, TBPTTSpec, WindowsSpec, VariableSpec)}


def strategy_from_flags(k1: int | None = None, k2: int | None = None, mode: str = "stored", overlap: int = 0,
                        burn_in: int = 0, variable_sl: bool = False, sl_bucket: int = 1) -> StrategySpec:
    """The strategy ``looplm train``'s flags ask for; two strategies at once are refused."""
    if overlap < 0 or burn_in < 0:
        raise LooplmError(f"--overlap and --burn-in must not be negative, got {overlap}, {burn_in}")
    chosen = [name for name, on in (("--k1/--k2", k1 is not None or k2 is not None), ("--overlap", overlap > 0),
                                    ("--burn-in", burn_in > 0), ("--variable-sl", variable_sl)) if on]
    if len(chosen) > 1:
        raise LooplmError(f"{' and '.join(chosen)} are different training strategies: choose one")
    if k1 is not None or k2 is not None:
        return TBPTTSpec(k1, k2, mode)
    if overlap or burn_in:
        return WindowsSpec(overlap, burn_in)
    return VariableSpec(sl_bucket) if variable_sl else ChunksSpec()


def strategy_to_dict(spec: StrategySpec) -> dict[str, Any]:
    return {"kind": spec.kind, **dataclasses.asdict(spec)}


def strategy_from_dict(data: Any, where: str) -> StrategySpec:
    if not isinstance(data, dict) or data.get("kind") not in STRATEGIES:
        raise LooplmError(f"{where} must be an object whose \"kind\" is one of {', '.join(STRATEGIES)}, "
                          f"got {data!r:.60}")
    return from_dict(STRATEGIES[data["kind"]], {k: v for k, v in data.items() if k != "kind"}, where)


# -- the settings of a training run -----------------------------------------------------------
@dataclass
class TrainConfig:
    """Every setting of a training run; ``config.json`` keeps the model's, the data source's
    and the training's own parts of it (:func:`config_to_dict`)."""

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
    model_config: dict[str, Any] = field(default_factory=dict)  # the model's settings but vocab_sz
    strategy: StrategySpec = field(default_factory=ChunksSpec)  # how the training stream becomes updates
    precision: str = "fp32"  # fp32, bf16, fp16 or auto (the CLI's default); config.json records what auto chose
    time_budget: float | None = None  # minutes for training and validation: the schedule is planned to fit
    budget: dict[str, Any] | None = None  # that plan (looplm.budget.BudgetPlan), made once before training

    def validate(self) -> None:
        reals = {"--lr": self.lr, "--wd": self.wd, "--alpha": self.alpha, "--beta": self.beta,
                 "--clip": 1.0 if self.clip is None else self.clip, "--moms": sum(self.moms)}
        for flag, value in reals.items():
            if not math.isfinite(value):
                raise LooplmError(f"{flag} must be finite, got {value}")
        if not all(0 <= m < 1 for m in self.moms):
            raise LooplmError(f"--moms must each lie in [0, 1), got {' '.join(map(str, self.moms))}")
        if not 0 <= self.seed < 2**63:
            raise LooplmError(f"--seed must lie in [0, 2**63), got {self.seed}")
        check_precision(self.precision, resolve_device(self.device))
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
        if self.time_budget is not None and not 0 < self.time_budget < math.inf:
            raise LooplmError(f"--time-budget must be a positive number of minutes, got {self.time_budget}")
        self.strategy.validate(self.sl)


# the TrainConfig fields that config.json keeps in the "model" and "data" sections; every other
# field (a new one too) is written to and read from "training", a missing one taking its default
_PARTS = ("data", "model", "data_options", "model_config")


def _training_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig) if f.name not in _PARTS]


@dataclass
class RunConfig:
    """A run's settings as config.json holds them: ``model_config`` is the model's dataclass."""

    train: TrainConfig
    model_config: Any

    @property
    def model(self) -> str:
        return self.train.model


def config_to_dict(cfg: TrainConfig, model_config: Any) -> dict[str, Any]:
    """config.json's content: the model's config, the data source's own options, the training."""
    options = dataclasses.asdict(cfg.data_options)
    training = {name: getattr(cfg, name) for name in _training_fields()}
    training = {k: list(v) if isinstance(v, tuple) else v for k, v in training.items()}
    training["strategy"] = strategy_to_dict(cfg.strategy)
    return {
        "format": FORMAT,
        "looplm_version": __version__,
        "model": {"name": cfg.model, **dataclasses.asdict(model_config)},
        "data": {"name": cfg.data, **{k: options[k] for k in source_options(cfg.data)}},
        "training": training,
    }


def config_from_dict(config: Any, where: str = CONFIG) -> RunConfig:
    """The :class:`RunConfig` of config.json's parsed content (format 2, or 0.1's)."""
    if isinstance(config, dict) and "format" not in config and "train" in config:
        config = _from_format_1(config, where)
    if not isinstance(config, dict):
        raise LooplmError(f"{where} must hold a JSON object, got {type(config).__name__}")
    unknown = sorted(set(config) - {"format", "looplm_version", "model", "data", "training"})
    if config.get("format") != FORMAT or unknown:
        why = f"an unknown key {unknown[0]!r}" if unknown else f"format {config.get('format')!r}"
        raise LooplmError(f"{where} has {why}; this looplm reads format {FORMAT} and 0.1's runs: "
                          "upgrade looplm or retrain")
    for section in ("model", "data", "training"):
        if not isinstance(config.get(section), dict):
            raise LooplmError(f"{where} lacks its {section!r} section (a JSON object)")
    model, data, training = dict(config["model"]), dict(config["data"]), dict(config["training"])
    name, source = _pop_name(model, f"{where}: model"), _pop_name(data, f"{where}: data")
    spec = model_spec(name)
    model_config = from_dict(spec.config_cls, model, f"{where}: model")
    options = from_dict(DataOptions, data, f"{where}: data")
    own = set(source_options(source))
    if set(data) - own:
        raise LooplmError(f"{where}: data has a key {sorted(set(data) - own)[0]!r} that {source} does not use")
    strategy = (strategy_from_dict(training.pop("strategy"), f"{where}: training.strategy")
                if "strategy" in training else ChunksSpec())
    own_model = {k: v for k, v in dataclasses.asdict(model_config).items() if k != "vocab_sz"}
    cfg = from_dict(TrainConfig, training, f"{where}: training", fixed=dict(
        data=source, model=name, data_options=options, model_config=own_model, strategy=strategy))
    try:
        cfg.validate()
    except LooplmError as err:
        raise LooplmError(f"{where}: {err}") from None
    return RunConfig(cfg, model_config)


def write_config(run_dir: str | Path, config: dict[str, Any]) -> None:
    """Write ``config`` (from :func:`config_to_dict`) as the run's config.json, atomically."""
    atomic_write_text(Path(run_dir) / CONFIG, json.dumps(config, indent=2) + "\n")


def load_config(run_dir: str | Path, missing: str = "point at a directory written by looplm train",
                damaged: str = "retrain or restore it") -> RunConfig:
    """The settings of the run in ``run_dir``, from its config.json; ``missing`` and ``damaged``
    end the message when there is none or it cannot be read."""
    path = Path(run_dir) / CONFIG
    if not (path.exists() or path.is_symlink()):
        raise LooplmError(f"{run_dir} is not a run directory (no {CONFIG}): {missing}")
    return config_from_dict(read_json(path, "the run config", damaged), str(path))


def _pop_name(section: dict[str, Any], where: str) -> str:
    name = section.pop("name", None)
    if not isinstance(name, str):
        raise LooplmError(f"{where} lacks its \"name\" (a string)")
    return name


def _from_format_1(config: dict[str, Any], where: str) -> dict[str, Any]:
    """looplm 0.1's config.json as format 2: its model's and data source's own settings only."""
    try:
        train, name = dict(config["train"]), config["model"]
        fields = {f.name for f in dataclasses.fields(model_spec(name).config_cls)}
        model = {k: v for k, v in config["model_config"].items() if k in fields}
        options = train.pop("data_options")
        data = {"name": train["data"], **{k: options[k] for k in source_options(train["data"]) if k in options}}
        if "split_at" in source_options(train["data"]):
            data["split_at"] = "char"  # 0.1 cut text at the next character, not at a word start
        strategy = strategy_to_dict(strategy_from_flags(
            train.pop("k1"), train.pop("k2"), train.pop("tbptt_mode"), train.pop("overlap"), train.pop("burn_in"),
            train.pop("variable_sl")))
        training = {k: train[k] for k in _training_fields() if k in train}
    except (KeyError, TypeError, AttributeError) as err:
        raise LooplmError(f"{where} does not hold looplm training settings ({err}): retrain") from None
    return {"format": FORMAT, "looplm_version": config.get("looplm_version"), "model": {"name": name, **model},
            "data": data, "training": {**training, "strategy": strategy}}
