"""Atomic, durable file writes: a reader sees the old file or the new one, never half of
one, and a rename is trusted only once the bytes it points to are on disk.

    write tmp -> fsync tmp -> rename tmp over path -> fsync the folder

New files get the permissions every other tool gives them (0666 minus the umask), not the
0600 of a temporary file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` minus the process's umask."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


def fsync_file(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | Path) -> None:
    """Make a rename or a new entry in folder ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    ``write`` receives a path (not a handle) so libraries that open files
    themselves (safetensors, matplotlib) can write through it too.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, umask_mode())
        write(Path(tmp))
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))

