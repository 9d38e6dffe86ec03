"""Token streams cached on disk as numpy memmaps, so a corpus is tokenised once and never loaded.

    $LOOPLM_CACHE (default ~/.cache/looplm)/
      tokenizers/<key>.json         a fitted tokenizer (key: corpus bytes + split + spec)
      streams/<key>/                key: corpus bytes + split + the tokenizer itself
        train.bin  valid.bin        raw uint16 ids (uint32 when the vocab has > 65,536 tokens)
        meta.json                   dtype, lengths, and what the builder recorded

An entry is built in a temporary folder and renamed into place, so a reader sees a whole
entry or none; two processes building the same entry both succeed and one copy is kept.
The tensors returned are views of the memmap: batches read the pages they touch, and the
operating system may drop them again, so resident memory does not grow with the corpus.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import torch
from torch import Tensor

from looplm.atomic import atomic_write_text, umask_mode

T = TypeVar("T")
from looplm.errors import LooplmError

STREAMS = ("train", "valid")
_VERSION = "1"  # bump when the layout of an entry changes


def cache_dir() -> Path:
    """``$LOOPLM_CACHE``, else ``~/.cache/looplm``."""
    return Path(os.environ.get("LOOPLM_CACHE") or Path.home() / ".cache" / "looplm")


def cache_key(*parts: str) -> str:
    """A short hex digest naming a cache entry."""
    h = hashlib.blake2b(digest_size=16)
    for part in (_VERSION, *parts):
        h.update(part.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()


def token_dtype(vocab_sz: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_sz <= 1 << 16 else np.uint32)


def _writable(folder: Path) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise LooplmError(f"cannot create the token cache {folder}: {err.strerror} "
                          "(set LOOPLM_CACHE to a writable folder)") from None
    return folder


def cached_json(key: str, build: Callable[[], dict[str, Any]], parse: Callable[[dict[str, Any]], T],
                kind: str = "tokenizers") -> T:
    """``parse`` of the JSON stored under ``key``; an entry that is missing, or damaged so that
    ``parse`` refuses it, is replaced by ``build()``'s."""
    path = _writable(cache_dir() / kind) / f"{key}.json"
    try:
        return parse(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, RecursionError):
        data = build()
        atomic_write_text(path, json.dumps(data, ensure_ascii=False))
        return parse(data)


class StreamWriter:
    """Appends id arrays to the streams of an entry being built."""

    def __init__(self, folder: Path, dtype: np.dtype):
        self.dtype = np.dtype(dtype)
        self._files = {name: open(folder / f"{name}.bin", "wb") for name in STREAMS}
        self.lengths = dict.fromkeys(STREAMS, 0)

    def write(self, stream: str, ids: np.ndarray) -> None:
        """Append ``ids`` (n,) to ``stream`` ("train" or "valid")."""
        self._files[stream].write(np.ascontiguousarray(ids, dtype=self.dtype).tobytes())
        self.lengths[stream] += len(ids)

    def close(self) -> None:
        for f in self._files.values():
            f.close()


@dataclass(frozen=True)
class CachedStreams:
    """``train`` and ``valid`` (n,) uint16/uint32 tensors backed by the files in ``path``."""

    train: Tensor
    valid: Tensor
    meta: dict[str, Any]
    path: Path


def _open(folder: Path, n_ids: int | None = None) -> CachedStreams | None:
    """The entry in ``folder``, or None when it is missing or damaged (an id >= ``n_ids``)."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        dtype = np.dtype(meta["dtype"])
        tensors = {}
        for name in STREAMS:
            n, path = meta["lengths"][name], folder / f"{name}.bin"
            if n < 1 or path.stat().st_size != n * dtype.itemsize:
                return None
            # mode "c": copy-on-write pages, so torch gets a writable array and the file is never changed
            tensors[name] = torch.from_numpy(np.memmap(path, dtype=dtype, mode="c", shape=(n,)))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, RecursionError):
        return None
    if n_ids is not None and any(len(t) and int(t.numpy().max()) >= n_ids for t in tensors.values()):
        return None  # one pass over the memmap, in C: a tokenised corpus is read once per run
    return CachedStreams(tensors["train"], tensors["valid"], meta, folder)


def cached_streams(key: str, dtype: np.dtype, build: Callable[[StreamWriter], dict[str, Any]],
                   n_ids: int | None = None) -> CachedStreams:
    """The streams stored under ``key``; on a miss, ``build(writer)`` writes them (and returns
    extra metadata) into a temporary folder that is then renamed into place. ``n_ids``: an
    entry holding an id of ``n_ids`` or more is damaged (rebuilt, never handed to a model)."""
    root = _writable(cache_dir() / "streams")
    final = root / key
    found = _open(final, n_ids)
    if found is not None:
        return found
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    os.chmod(tmp, umask_mode(0o777))
    try:
        writer = StreamWriter(tmp, dtype)
        try:
            extra = build(writer)
        finally:
            writer.close()
        meta = {**extra, "dtype": writer.dtype.name, "lengths": writer.lengths}
        (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        if _open(final, n_ids) is None:
            shutil.rmtree(final, ignore_errors=True)  # a damaged entry
            try:
                tmp.rename(final)
            except OSError:  # another process renamed its copy in first
                pass
        shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    found = _open(final, n_ids)
    if found is None:
        raise LooplmError(f"the token cache entry {final} is unreadable after writing it: "
                          "set LOOPLM_CACHE to another folder")
    return found
