"""Progress of an epoch's updates: a tqdm bar on a terminal, plain lines anywhere else.

A bar redraws itself with carriage returns, which a log file (CI, ``nohup``, ``2> train.log``)
keeps as thousands of fragments; when standard error is not a terminal, each epoch prints one
line when it ends instead, and one every ``every`` seconds while a long epoch runs.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
PLAIN_EVERY = 60.0  # seconds between the plain lines of one long epoch


def progress(items: Iterable[T], total: int, initial: int = 0, desc: str = "", enabled: bool = True,
             stream: IO[str] | None = None, every: float = PLAIN_EVERY) -> Iterable[T]:
    """``items`` with a progress display on ``stream`` (default: standard error)."""
    stream = sys.stderr if stream is None else stream
    if not enabled:
        return items
    if getattr(stream, "isatty", lambda: False)():
        return tqdm(items, total=total, initial=initial, desc=desc, leave=False, mininterval=0.5, file=stream)
    return _plain(items, total, initial, desc, stream, every)


def _plain(items: Iterable[T], total: int, done: int, desc: str, stream: IO[str], every: float) -> Iterator[T]:
    start = last = time.monotonic()
    try:
        for item in items:
            done += 1  # counted when handed out: a loop that breaks has still done this one
            yield item
            now = time.monotonic()
            if now - last >= every and done < total:
                print(f"{desc}: {done:,}/{total:,} updates, {now - start:.0f} s", file=stream, flush=True)
                last = now
    finally:
        # An epoch planned to stop inside its stream leaves the loop with ``break``: the
        # generator is closed rather than exhausted, and its line must still be printed.
        print(f"{desc}: {done:,}/{total:,} updates in {time.monotonic() - start:.1f} s", file=stream, flush=True)
