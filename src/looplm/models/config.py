"""Configuration of the chapter's models: one dataclass, saved in every run."""

from __future__ import annotations

from dataclasses import dataclass


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
