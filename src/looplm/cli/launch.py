"""``looplm train --nproc N``: start the same command again as N ranks under torchrun."""

from __future__ import annotations

import subprocess
import sys
from typing import Sequence


def strip_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``--nproc N`` / ``--nproc=N``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``looplm <argv>`` as ``nproc`` ranks on this machine with torchrun (standalone
    rendezvous on a free port); returns torchrun's exit code."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "looplm", *strip_nproc(argv)]
    proc = subprocess.Popen(cmd)
    try:
        return proc.wait()
    except KeyboardInterrupt:  # torchrun got the Ctrl-C too: its workers checkpoint and stop
        proc.wait()
        return 130
