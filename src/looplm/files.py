"""Reading the files looplm did not just write (run files, data, cache entries): one place
checks what a path is before anything opens it, so a FIFO cannot hang a command, a huge or
deeply nested file cannot exhaust memory or the stack, and each failure is one line.

    check_file(path, what)      a regular file (a symlink to one is fine), below a size bound
    read_json(path, what, ...)  check_file, then UTF-8 JSON of bounded size (and parser depth)
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from looplm.errors import LooplmError

MAX_JSON_BYTES = 256 << 20  # the largest run JSON is a BPE tokenizer's: a few MB at 50k tokens


def check_file(path: str | Path, what: str, fix: str = "restore it or retrain", max_bytes: int | None = None) -> Path:
    """``path`` if it is a regular file (of at most ``max_bytes``), else a one-line refusal.
    Uses ``stat`` (never ``open``), so a FIFO or a device is refused without blocking."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise LooplmError(f"{what} {path} does not exist: {fix}") from None
    except OSError as err:
        raise LooplmError(f"cannot read {what} {path}: {err.strerror}: {fix}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a FIFO, socket or device)"
        raise LooplmError(f"{what} {path} is {kind}: {fix}")
    if max_bytes is not None and st.st_size > max_bytes:
        raise LooplmError(f"{what} {path} is {st.st_size:,} bytes, more than the {max_bytes:,} such a file "
                          f"can hold: {fix}")
    return path


def read_json(path: str | Path, what: str, fix: str = "restore it or retrain",
              max_bytes: int = MAX_JSON_BYTES) -> Any:
    """The JSON in ``path`` (see :func:`check_file`); a file nested too deep for the parser
    (RecursionError) is refused like any damaged one."""
    check_file(path, what, fix, max_bytes)
    try:
        return json.loads(Path(path).read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise LooplmError(f"{what} {path} is damaged ({type(err).__name__}: {err}): {fix}") from None
