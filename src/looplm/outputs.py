"""The output guard: every command that writes checks its output first, writes nothing
before every check has passed, and replaces only what looplm itself wrote.

    Output(path, RUN, inputs=[data], overwrite=False)   # checks now, writes nothing
        ...every other check of the command...
    with output.writing() as path:                      # creates the folder (or its parents)
        ...write...                                     # a refusal in here removes what it created

What an output may be (checked in :meth:`Output.__init__`):

    path does not exist   its nearest existing parent is a writable folder
    path is empty folder  (folder outputs) used as it is
    path exists           refused, unless --overwrite and it is a previous output of the
                          same kind: a folder holding only what that kind writes (and its
                          marker file), or a file of that kind (PNG signature, ...)
    path = an input, or inside one (a data folder), or an input inside it: refused

Every refusal is a :class:`LooplmError`: one line, exit code 2, nothing touched.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from looplm.errors import LooplmError


@dataclass(frozen=True)
class OutputKind:
    """What a command writes: a folder of known entries, or one file."""

    what: str  # "run directory", "lr-find plot", ...
    is_dir: bool
    owned: tuple[str, ...] = ()  # folder: fnmatch patterns of the entries this kind writes
    marker: str | None = None  # folder: the entry every previous output of this kind has
    magic: bytes | None = None  # file: how a previous output of this kind starts (None: any file)


TMP = ".*.tmp"  # looplm.atomic's temporary files, left by a killed writer
RUN = OutputKind("looplm run directory", True, marker="config.json", owned=(
    "config.json", "vocab.json", "tokenizer.json", "data.json", "model.safetensors", "metrics.csv", "curves.png",
    "checkpoint", "checkpoint-*", ".checkpoint*", "CHECKPOINT", TMP, "tensorboard", "tb", "train.log"))
REPORT = OutputKind("looplm report directory", True, marker="results.json",
                    owned=("REPORT.md", "results.json", "*.png", TMP))
PNG = OutputKind("PNG plot", False, magic=b"\x89PNG\r\n\x1a\n")
TEXT = OutputKind("text file", False)


def utf8_path(text: str, flag: str = "a path") -> Path:
    """``text`` as a Path, refused when its name is not valid UTF-8 (it could be written to
    but not named in JSON, in a plot, or by safetensors)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise LooplmError(f"{flag} {text!r} is not a valid UTF-8 name: rename it") from None
    return Path(text)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


class Output:
    """One output path of a command, checked on construction (see the module docstring)."""

    def __init__(self, path: str | Path, kind: OutputKind, *, inputs: Iterable[str | Path | None] = (),
                 overwrite: bool = False, flag: str = "--out"):
        self.path, self.kind, self.overwrite, self.flag = utf8_path(str(path), flag), kind, overwrite, flag
        self.created: Path | None = None  # the topmost folder this output created
        self._check_inputs([Path(p) for p in inputs if p is not None])
        if self.path.exists() or self.path.is_symlink():
            self._check_existing()
        else:
            self._check_parent()

    def _refuse(self, why: str) -> LooplmError:
        return LooplmError(f"{self.flag} {self.path} {why}")

    def _check_inputs(self, inputs: list[Path]) -> None:
        out = self.path.resolve()
        for given in inputs:
            inp = given.resolve()
            if _inside(out, inp):
                raise self._refuse(f"is {'inside ' if out != inp else ''}the input {given}: choose another {self.flag}")
            if self.kind.is_dir and _inside(inp, out):
                raise self._refuse(f"holds the input {given}: choose another {self.flag}")

    def _check_existing(self) -> None:
        path, kind = self.path, self.kind
        if kind.is_dir and not path.is_dir():
            raise self._refuse(f"is not a folder: {self.flag} names the {kind.what} to write")
        if not kind.is_dir and not path.is_file():
            raise self._refuse(f"is not a regular file: {self.flag} names the {kind.what} to write")
        if kind.is_dir and not any(path.iterdir()):
            return self._check_writable(path)
        if not self.overwrite:
            raise self._refuse(f"already exists{' and is not empty' if kind.is_dir else ''}: choose a new "
                               f"{self.flag}, or add --overwrite to replace a previous {kind.what}")
        self._check_previous()
        self._check_writable(path if kind.is_dir else path.parent)

    def _check_previous(self) -> None:
        """--overwrite replaces an output of the same kind only, never anything else."""
        path, kind = self.path, self.kind
        if not kind.is_dir:
            if kind.magic is not None:
                with path.open("rb") as f:
                    if f.read(len(kind.magic)) != kind.magic:
                        raise self._refuse(f"is not a {kind.what}: --overwrite replaces only a previous {kind.what}")
            return
        marker = path / kind.marker if kind.marker else None
        if marker is not None and not (marker.is_file() and not marker.is_symlink()):
            raise self._refuse(f"is not a {kind.what} (no {kind.marker}): --overwrite replaces only a "
                               f"previous {kind.what}; choose another {self.flag}")
        foreign = sorted(e.name for e in path.iterdir() if not self._owned(e.name))
        if foreign:
            raise self._refuse(f"holds {foreign[0]!r}, which looplm did not write: --overwrite replaces only a "
                               f"{kind.what}; move it or choose another {self.flag}")

    def _owned(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.kind.owned)

    def _check_parent(self) -> None:
        parent = self.path if self.kind.is_dir else self.path.parent
        while not (parent.exists() or parent.is_symlink()):
            parent = parent.parent
        if not parent.is_dir():
            raise self._refuse(f"cannot be created: {parent} is not a folder (choose another {self.flag})")
        self._check_writable(parent)

    def _check_writable(self, folder: Path) -> None:
        if not os.access(folder, os.W_OK | os.X_OK):
            raise self._refuse(f"cannot be written: {folder} is not writable (choose another {self.flag})")

    # -- writing -------------------------------------------------------------------
    def create(self) -> Path:
        """Make the folder to write (removing a previous output's entries with --overwrite)."""
        folder = self.path if self.kind.is_dir else self.path.parent
        if self.overwrite and self.kind.is_dir and self.path.is_dir():
            for entry in self.path.iterdir():
                if self._owned(entry.name):
                    shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        top = folder
        while not top.parent.exists() and top.parent != top:
            top = top.parent
        if not folder.exists():
            try:
                folder.mkdir(parents=True)
            except OSError as err:
                raise self._refuse(f"cannot be created: {err.strerror} (choose another {self.flag})") from None
            self.created = top
        return self.path

    def discard(self) -> None:
        """Remove the folders :meth:`create` made (a refusal after it leaves nothing behind)."""
        if self.created is not None:
            shutil.rmtree(self.created, ignore_errors=True)
            self.created = None

    @contextmanager
    def writing(self) -> Iterator[Path]:
        """:meth:`create`, then a refusal (:class:`LooplmError`) inside the block removes
        the folders it created."""
        self.create()
        try:
            yield self.path
        except LooplmError:
            self.discard()
            raise
