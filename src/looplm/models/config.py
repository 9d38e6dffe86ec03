"""Configuration of the chapter's models: one dataclass, saved in every run."""

from __future__ import annotations

from dataclasses import dataclass

from looplm.errors import LooplmError


@dataclass
class ChapterLMConfig:
    """Sizes and switches of LMModel1-LModel7 (each model reads the fields it needs).

    vocab_sz: tokens in the vocab; n_hidden: hidden (and embedding) size;
    n_layers: stacked layers (lm5-lm7); p: dropout before the output layer (lm7);
    fast: run time loops in PyTorch kernels instead of the readable Python loop.
    """

    vocab_sz: int
    n_hidden: int = 64
    n_layers: int = 2
    p: float = 0.4
    fast: bool = True

    def validate(self) -> None:
        if self.n_hidden < 1 or self.n_layers < 1:
            raise LooplmError(f"n_hidden and n_layers must be at least 1, got {self.n_hidden}, {self.n_layers}")
        if not 0.0 <= self.p < 1.0:
            raise LooplmError(f"the dropout p must be in [0, 1), got {self.p}")
