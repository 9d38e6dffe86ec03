"""Configurations of the chapter's models: each holds the sizes its models have, and is saved
in every run (LMModel1-4 have one hidden layer and no dropout; LMModel5 and LModel6 stack
layers; LModel7 adds dropout)."""

from __future__ import annotations

from dataclasses import dataclass

from looplm.errors import LooplmError

DROPOUTS = ("torch", "scratch")


@dataclass
class ChapterRNNConfig:
    """LMModel1-LMModel4. vocab_sz: tokens in the vocab; n_hidden: hidden (and embedding)
    size; fast: run the time loop in a PyTorch kernel instead of the readable Python loop."""

    vocab_sz: int
    n_hidden: int = 64
    fast: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.n_hidden < 1:
            raise LooplmError(f"n_hidden must be at least 1, got {self.n_hidden}")


@dataclass
class ChapterStackedConfig:
    """LMModel5, LModel6 and its GRU and from-scratch twins: ``n_layers`` stacked recurrent
    layers of ``n_hidden`` units; fast: the from-scratch layers' fused time loop."""

    vocab_sz: int
    n_hidden: int = 64
    n_layers: int = 2
    fast: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.n_hidden < 1 or self.n_layers < 1:
            raise LooplmError(f"n_hidden and n_layers must be at least 1, got {self.n_hidden}, {self.n_layers}")


@dataclass
class ChapterDropoutConfig(ChapterStackedConfig):
    """LModel7: LModel6's sizes and p, the dropout before the output layer; dropout: which
    one, "torch" (``looplm.nn.Dropout``: torch.nn.Dropout's distribution, vectorised) or "scratch"
    (the chapter's hand-written ``bernoulli_`` one, ``looplm.nn.ChapterDropout``)."""

    p: float = 0.4
    dropout: str = "torch"

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.p < 1.0:
            raise LooplmError(f"the dropout p must be in [0, 1), got {self.p}")
        if self.dropout not in DROPOUTS:
            raise LooplmError(f"dropout must be one of {', '.join(DROPOUTS)}, got {self.dropout!r}")
