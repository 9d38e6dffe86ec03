"""A run directory: everything needed to reload, evaluate or continue a trained model.

    RUNDIR/
      config.json        what was trained and how (model name + config, training settings)
      vocab.json         token <-> id
      model.safetensors  the weights (no pickle: loading never runs code from the file)
      metrics.csv        one row per epoch
      curves.png         losses and accuracy per epoch

Every file is written atomically (temporary file, then rename).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_model
from torch import nn

from looplm.atomic import atomic_write, atomic_write_text
from looplm.data.vocab import Vocab
from looplm.errors import LooplmError
from looplm.files import check_file
from looplm.finite import all_finite
from looplm.models.registry import model_spec
from looplm.runconfig import CONFIG, RunConfig, load_config, write_config

VOCAB, WEIGHTS, METRICS, CURVES = "vocab.json", "model.safetensors", "metrics.csv", "curves.png"


def save_run(out: str | Path, model: nn.Module | None, vocab: Vocab, config: dict[str, Any], history: list[dict]) -> None:
    """Write config and vocab, and the weights and metrics when given (into ``out``, a
    folder a :class:`looplm.outputs.Output` has checked and created)."""
    out = Path(out)
    write_config(out, config)
    vocab.save(out / VOCAB)
    if model is not None:
        atomic_write(out / WEIGHTS, lambda tmp: save_model(model, str(tmp), metadata={"format": "pt"}))
    if history:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
        atomic_write_text(out / METRICS, buf.getvalue())


def weights_mismatch(model: nn.Module, path: str | Path, vocab_sz: int | None = None) -> str | None:
    """What differs between the shapes of the tensors in the safetensors file ``path`` and
    ``model``'s (None when nothing does, or when the file cannot be read: loading it says so).
    Reads the file's header only. With ``vocab_sz``, a vocab-sized tensor of another size is
    reported as the vocab the weights were trained with."""
    try:
        with safe_open(str(path), framework="pt") as f:
            stored = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError):
        return None
    wanted = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    differ = [k for k in wanted if k in stored and stored[k] != wanted[k]]
    if not differ:
        return None
    for k in differ:
        if vocab_sz is not None and wanted[k][:1] == (vocab_sz,) and stored[k][1:] == wanted[k][1:]:
            return (f"the weights were trained with a vocab of {stored[k][0]} tokens, the run's vocab has "
                    f"{vocab_sz} ({k} is {list(stored[k])} in the file)")
    return "; ".join(f"{k} is {list(stored[k])} in the file, {list(wanted[k])} in the model" for k in differ[:3])


@dataclass
class LoadedRun:
    """A run directory read back: its trained model, its vocab, its settings."""

    model: nn.Module
    vocab: Vocab
    config: RunConfig


def load_run(path: str | Path, device: str = "cpu") -> LoadedRun:
    """Rebuild the model of a run directory and load its weights (safetensors only). The
    weights' shapes are compared, from the file's header, with a model built on the meta
    device first: a config.json that asks for a huge model allocates nothing."""
    path = Path(path)
    for name in (CONFIG, VOCAB, WEIGHTS):
        if not (path / name).exists():
            raise LooplmError(f"the run directory {path} has no {name}: point --run at a directory written by looplm train")
        check_file(path / name, f"the run's {name}")
    config = load_config(path)
    name = config.model
    vocab = Vocab.load(path / VOCAB)
    if config.model_config.vocab_sz != len(vocab):
        raise LooplmError(
            f"{path}: the weights were trained with a vocab of {config.model_config.vocab_sz} tokens "
            f"but vocab.json has {len(vocab)}: the run directory mixes files of different runs"
        )
    spec = model_spec(name)
    with torch.device("meta"):  # shapes only: a config that asks for a huge model allocates nothing
        why = weights_mismatch(spec.build(config.model_config), path / WEIGHTS, len(vocab))
    if why:
        raise LooplmError(f"{path / WEIGHTS} does not fit model {name} as config.json describes it: {why} "
                          "(the run directory mixes files of different runs)")
    model = spec.build(config.model_config)
    try:
        missing, unexpected = load_model(model, str(path / WEIGHTS), strict=False, device=device)
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        raise LooplmError(f"cannot load the weights {path / WEIGHTS}: {err} (the file is corrupt: retrain)") from None
    if missing or unexpected:
        raise LooplmError(f"{path / WEIGHTS} does not match model {name}: missing {missing}, unexpected {unexpected}")
    if not all_finite(model):
        raise LooplmError(f"{path / WEIGHTS} holds non-finite weights (nan or inf): the run diverged; "
                          "retrain with a lower --lr or with --clip")
    return LoadedRun(model.to(device), vocab, config)
