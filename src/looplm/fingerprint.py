"""What data a run was trained on, as a fingerprint of its token streams (``data.json`` in the
run directory), so that resume and eval can tell when the data changed since.

    {"data": "/abs/story.txt", "valid": null,
     "train": "<blake2b of the train stream>", "valid_stream": "<... of the valid stream, or null>"}

The fingerprint is taken of the token ids (one pass over the memmap, no copy), so it covers
every source alike: a text file, a folder, the generated sources with their options. Text
read by the run's own tokenizer gives the same ids exactly when it is the same text.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from torch import Tensor

from looplm.atomic import atomic_write_text
from looplm.data.corpus import Corpus
from looplm.errors import LooplmError
from looplm.files import read_json
from looplm.strict import from_dict

DATA = "data.json"


@dataclass
class DataFingerprint:
    data: str
    valid: str | None
    train: str
    valid_stream: str | None


def digest(tokens: Tensor) -> str:
    arr = np.ascontiguousarray(tokens.numpy())
    h = hashlib.blake2b(arr.dtype.str.encode(), digest_size=16)
    h.update(arr.reshape(-1).view(np.uint8))
    return h.hexdigest()


def fingerprint(corpus: Corpus, data: str, valid: str | None) -> DataFingerprint:
    v = corpus.valid_tokens
    return DataFingerprint(data, valid, digest(corpus.tokens), None if v is None else digest(v))


def save_fingerprint(run_dir: str | Path, fp: DataFingerprint) -> None:
    atomic_write_text(Path(run_dir) / DATA, json.dumps(asdict(fp), indent=2) + "\n")


def check_fingerprint(run_dir: str | Path, now: DataFingerprint, what: str) -> None:
    """Refuse (``what``: "resume", "eval") when the data differ from the run's; runs written
    before fingerprints were stored have no data.json and are let through."""
    path = Path(run_dir) / DATA
    if not path.exists():
        return
    then = from_dict(DataFingerprint, read_json(path, "the run's data fingerprint"), str(path))
    if then.train != now.train:
        changed = now.data
    elif then.valid_stream != now.valid_stream:
        changed = now.valid or now.data
    else:
        return
    fix = ("resume needs the data the run was trained on: restore it, or train a new run" if what == "resume"
           else f"eval without --file scores the run's own validation data: restore it, or score the new text "
                f"with --file {changed}")
    raise LooplmError(f"the data {changed} changed since the run was trained (its tokens' fingerprint differs); {fix}")
