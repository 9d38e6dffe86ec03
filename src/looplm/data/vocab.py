"""Vocabulary: token <-> id, saved as JSON, with an optional unknown token."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from looplm.atomic import atomic_write_text
from looplm.files import read_json
from looplm.strict import from_dict
from looplm.errors import LooplmError


@dataclass(frozen=True)
class Vocab:
    """An ordered list of tokens; a token's id is its index.

    ``unk``, when set, must be one of the tokens: unknown tokens then map to it.
    Without it, encoding an unknown token is an error that names the token.
    """

    itos: tuple[str, ...]
    unk: str | None = None
    stoi: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.itos:
            raise LooplmError("a vocab needs at least one token")
        stoi = {tok: i for i, tok in enumerate(self.itos)}
        if len(stoi) != len(self.itos):
            raise LooplmError("a vocab must not list a token twice")
        if self.unk is not None and self.unk not in stoi:
            raise LooplmError(f"the unknown token {self.unk!r} is not in the vocab")
        object.__setattr__(self, "stoi", stoi)

    @classmethod
    def from_tokens(cls, tokens: Iterable[str], unk: str | None = None) -> "Vocab":
        """Distinct tokens in order of first appearance (as the chapter's ``L.unique``)."""
        itos = dict.fromkeys(tokens)
        if unk is not None:
            itos.setdefault(unk)
        return cls(tuple(itos), unk)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Sequence[str]) -> np.ndarray:
        """Token strings -> int64 ids, shape (len(tokens),).

        Looks up each distinct token once, then maps with numpy, so a long stream
        costs one dict lookup per distinct token, not per token.
        """
        distinct, inverse = np.unique(np.asarray(tokens, dtype=object), return_inverse=True)
        ids = np.empty(len(distinct), dtype=np.int64)
        unk_id = None if self.unk is None else self.stoi[self.unk]
        for i, tok in enumerate(distinct):
            found = self.stoi.get(tok, unk_id)
            if found is None:
                raise LooplmError(
                    f"unknown token {tok!r}: it is not in the vocab of {len(self)} tokens "
                    "(use text the model was trained on, or a vocab with an unknown token)"
                )
            ids[i] = found
        return ids[inverse.reshape(-1)]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[int(i)] for i in ids]

    def to_json(self) -> str:
        return json.dumps({"itos": list(self.itos), "unk": self.unk}, ensure_ascii=False)

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "Vocab":
        return from_dict(cls, read_json(path, "the vocab", "is the run directory complete?"), str(path))
