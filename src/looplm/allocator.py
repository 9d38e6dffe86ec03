"""Keep freed memory in the process, so a training step does not page-fault its activations in.

glibc's malloc serves every block above its mmap threshold (128 KiB at start, raised as large
blocks are freed) with a fresh ``mmap`` and gives it back with ``munmap`` when freed, and it
trims the top of its heap once more than the trim threshold is free there. A training step
allocates the same activations, gates and gradients every step (a small model's are 0.25-1 MiB
each), so each step mapped them anew and wrote them in page by page: on the chapter's lm7
(bs 64, sl 16) 200-1,200 minor page faults per step, 15-30% of its CPU time at one thread.
Raising both thresholds keeps those blocks in the heap to be reused: ~1 fault per step, the
same numbers computed.

    allocate ──► step ──► free ─┐      glibc default: munmap, then mmap + page faults next step
       ▲                        │      kept: the block goes back to malloc's free lists
       └────────────────────────┘

Peak memory is what the largest step needs, as before; what changes is that freed memory stays
with the process until it exits rather than returning to the system between steps.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
MMAP_THRESHOLD = 32 << 20   # glibc's largest allowed value on 64-bit: blocks up to 32 MiB reused
TRIM_THRESHOLD = 256 << 20  # keep up to 256 MiB free at the heap's top before giving it back
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


@functools.cache
def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (once); True when done.

    Nothing happens off Linux, with another C library (no ``mallopt``), or when the user has
    tuned malloc through its environment variables (theirs win)."""
    if not sys.platform.startswith("linux") or any(name in os.environ for name in USER_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
