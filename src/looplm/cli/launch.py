"""``looplm train --nproc N``: run the command as N ranks under torchrun, and report the job
as looplm reports everything: one line per failure, and looplm's exit codes.

torchrun's own output (its logs, the ChildFailedError traceback) is read and not shown;
the ranks' looplm lines are passed through once each (the same line from several ranks is
shown once). The exit code is the failing rank's: 2 bad input, 3 non-finite training,
130 Ctrl-C; a rank killed by a signal or failing with a bug is 1, with one line naming it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Sequence

_EXITCODE = re.compile(r"^\s*exitcode\s*:\s*(-?\d+)")
_RANK = re.compile(r"^\s*rank\s*:\s*(\d+)")
_RANK_PREFIX = re.compile(r"^(looplm: (?:error: )?)rank \d+: ")
_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b.*")


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


@dataclass
class JobReport:
    """What the ranks said (their looplm lines, once each) and how the first one failed."""

    shown: set[str] = field(default_factory=set)
    failures: list[tuple[int | None, int]] = field(default_factory=list)  # (rank, exit code) torchrun lists
    rank: int | None = None
    last_error: str | None = None  # the last "SomethingError: ..." line (a bug's traceback)
    # Ctrl-C reaches the launcher, torchrun and the ranks together; the launcher may miss its own
    # KeyboardInterrupt (the signal lands outside its read loop) while torchrun reports only its
    # SignalException, so the ranks' "interrupted" lines count as the job's Ctrl-C too.
    ranks_interrupted: bool = False

    def feed(self, line: str, out=sys.stderr) -> None:
        text = line.rstrip("\n")
        if text.startswith("looplm: "):
            key = _RANK_PREFIX.sub(r"\1", text)
            self.ranks_interrupted |= key.startswith("looplm: interrupted")
            if key not in self.shown and key != "looplm: interrupted":
                self.shown.add(key)
                print(text, file=out)
            return
        if m := _EXITCODE.match(text):
            self.failures.append((self.rank, int(m.group(1))))
        elif m := _RANK.match(text):
            self.rank = int(m.group(1))
        elif _ERROR_LINE.match(text) and "ChildFailedError" not in text and "SignalException" not in text:
            self.last_error = text

    def finish(self, code: int, interrupted: bool, out=sys.stderr) -> int:
        """The job's exit code. When one rank fails torchrun stops the others (SIGTERM), and
        either may be listed first: a rank's own exit code (130, 3, 2) wins over a signal."""
        if code == 0:
            return 0
        codes = [c for _, c in self.failures]
        for wins in (130, 3, 2):
            if (wins == 130 and (interrupted or self.ranks_interrupted)) or wins in codes:
                return wins
        rank, exitcode = next(((r, c) for r, c in self.failures if c != -15), (self.failures or [(None, code)])[0])
        who = "a rank" if rank is None else f"rank {rank}"
        if exitcode < 0:
            print(f"looplm: error: {who} was killed by signal {-exitcode}; the job stopped "
                  "(resume it with looplm train --resume RUNDIR)", file=out)
        elif not self.shown:
            why = self.last_error or f"exit code {exitcode}"
            print(f"looplm: error: {who} failed ({why}): run without --nproc to see the whole error", file=out)
        return 1


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``looplm <argv>`` as ``nproc`` ranks on this machine with torchrun (standalone
    rendezvous on a free port); returns the job's looplm exit code (see the module docstring)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "looplm", *strip_nproc(argv)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, errors="replace")
    report, interrupted = JobReport(), False
    while True:
        try:
            for line in proc.stderr:
                report.feed(line)
            break
        except KeyboardInterrupt:  # torchrun got the Ctrl-C too: its ranks checkpoint and stop
            interrupted = True
    return report.finish(proc.wait(), interrupted)
