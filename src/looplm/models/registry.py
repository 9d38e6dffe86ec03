"""One registry: model name -> class, config, batch layout, and the chapter's name for it."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from looplm.errors import LooplmError
from looplm.models.awd_lstm import AWD_LSTM_PRESETS, AWDLSTM, AWDLSTMConfig
from looplm.models.chapter_rnn import LMModel1, LMModel2, LMModel3, LMModel4
from looplm.models.chapter_stacked import LMModel5, LModel6, LModel7
from looplm.models.chapter_stacked import LModel6GRU, LModel6ScratchGRU, LModel6ScratchLSTM
from looplm.models.config import ChapterDropoutConfig, ChapterRNNConfig, ChapterStackedConfig
from looplm.models.text_lm import GRULM, LSTMLM, TextLMConfig


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[[Any], nn.Module]
    config_cls: type
    title: str
    fixed_sl: int | None = None  # lm1 reads exactly 3 tokens
    presets: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # named settings

    @property
    def layout(self) -> str:
        """How the model reads batches ("last": one prediction per chunk, "every": at every
        step), as the model class states it."""
        return self.build.layout

    def preset(self, name: str) -> dict[str, Any]:
        """The settings of preset ``name``, e.g. awd-lstm's ``fastai`` or ``paper``."""
        if not self.presets:
            raise LooplmError(f"model {self.name} has no presets: set its sizes with --set NAME=VALUE")
        if name not in self.presets:
            raise LooplmError(f"unknown preset {name!r} for {self.name}: choose one of {', '.join(self.presets)}")
        return dict(self.presets[name])

    def sizes(self, emb_sz: int | None = None, n_hidden: int | None = None,
              n_layers: int | None = None) -> dict[str, int]:
        """Size settings under this model's own names (the AWD-LSTM calls ``n_hidden`` ``n_hid``);
        ``None`` leaves a size at its default."""
        fields = {f.name for f in dataclasses.fields(self.config_cls)}
        hidden = "n_hid" if "n_hid" in fields else "n_hidden"
        out = {}
        for name, value in (("emb_sz", emb_sz), (hidden, n_hidden), ("n_layers", n_layers)):
            if value is not None:
                if name not in fields:
                    raise LooplmError(f"model {self.name} has no setting {name}: it is sized by "
                                      f"{', '.join(sorted(fields - {'vocab_sz'}))}")
                out[name] = value
        return out

    def check_fits_memory(self, config: Any) -> None:
        """Refuse settings whose training cannot fit in this machine's memory, before any of it
        is allocated: the model is built on the meta device (shapes only) and its parameters
        counted, four float32 copies each (weights, gradients, Adam's two moments)."""
        with torch.device("meta"):
            n = sum(p.numel() for p in self.build(config).parameters())
        need = 16 * n
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        if need > total:
            raise LooplmError(f"model {self.name} with these settings has {n:,} parameters: training needs about "
                              f"{need / 2**30:.1f} GiB, this machine has {total / 2**30:.1f} GiB "
                              "(use a smaller --n-hidden, --emb-sz, --n-layers or vocab)")

    def make_config(self, vocab_sz: int, **overrides: Any) -> Any:
        fields = [f.name for f in dataclasses.fields(self.config_cls) if f.name != "vocab_sz"]
        unknown = [name for name in overrides if name not in fields]
        if unknown:
            raise LooplmError(f"model {self.name} has no setting {unknown[0]!r}: it has {', '.join(fields)}")
        return self.config_cls(vocab_sz=vocab_sz, **overrides)  # a config checks itself when made


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("lm1", LMModel1, ChapterRNNConfig, "LMModel1", fixed_sl=3),
        ModelSpec("lm2", LMModel2, ChapterRNNConfig, "LMModel2"),
        ModelSpec("lm3", LMModel3, ChapterRNNConfig, "LMModel3"),
        ModelSpec("lm4", LMModel4, ChapterRNNConfig, "LMModel4"),
        ModelSpec("lm5", LMModel5, ChapterStackedConfig, "LMModel5"),
        ModelSpec("lm6", LModel6, ChapterStackedConfig, "LModel6"),
        ModelSpec("lm7", LModel7, ChapterDropoutConfig, "LModel7"),
        ModelSpec("lm6-gru", LModel6GRU, ChapterStackedConfig, "LModel6 GRU"),
        ModelSpec("lm6-scratch-gru", LModel6ScratchGRU, ChapterStackedConfig, "LModel6 scratch GRU"),
        ModelSpec("lm6-scratch-lstm", LModel6ScratchLSTM, ChapterStackedConfig, "LModel6 scratch LSTM"),
        ModelSpec("awd-lstm", AWDLSTM, AWDLSTMConfig, "AWD-LSTM", presets=AWD_LSTM_PRESETS),
        ModelSpec("lstm", LSTMLM, TextLMConfig, "LSTM language model"),
        ModelSpec("gru", GRULM, TextLMConfig, "GRU language model"),
    )
}


def model_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise LooplmError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}") from None


def build_model(name: str, vocab_sz: int, **overrides: Any) -> nn.Module:
    """A fresh model by registry name, e.g. ``build_model("lm7", 30, n_hidden=64)``."""
    spec = model_spec(name)
    return spec.build(spec.make_config(vocab_sz, **overrides))

