"""``train --nproc``: the launcher reports a job as looplm reports everything, one line per
failure and looplm's exit codes (2 bad input, 3 non-finite, 130 Ctrl-C, 1 otherwise)."""

import io
import subprocess
import sys

import pytest

from looplm.cli.main import main
from looplm.cli.launch import JobReport

TORCHRUN_TAIL = """[W1201 15:00:00.000000000 socket.cpp:755] [c10d] The client socket has failed to connect.
Traceback (most recent call last):
  File "/x/torch/distributed/run.py", line 900, in <module>
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
looplm FAILED
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-01_15:00:00
  host      : box
  rank      : 1 (local_rank: 1)
  exitcode  : {code} (pid: 4242)
  error_file: <N/A>
============================================================
"""


def report_of(lines: str, code: int = 1, interrupted: bool = False) -> tuple[int, str]:
    out, report = io.StringIO(), JobReport()
    for line in lines.splitlines(keepends=True):
        report.feed(line, out)
    return report.finish(code, interrupted, out), out.getvalue()


@pytest.mark.parametrize("exitcode, expected", [(2, 2), (3, 3), (130, 130), (1, 1), (-9, 1)])
def test_the_failing_ranks_exit_code_and_one_line_each(exitcode, expected):
    ranks = "looplm: error: rank 0: the data is bad\nlooplm: error: rank 1: the data is bad\n" if exitcode != -9 else ""
    code, shown = report_of(ranks + TORCHRUN_TAIL.format(code=exitcode))
    assert code == expected
    assert shown.count("\n") == 1 and "Traceback" not in shown and "ChildFailedError" not in shown
    if exitcode == -9:
        assert "rank 1 was killed by signal 9" in shown


def test_a_rank_stopped_by_torchrun_after_another_refused_is_still_exit_2():
    """torchrun may list the rank it stopped (SIGTERM) before the one that refused."""
    stopped = TORCHRUN_TAIL.format(code=-15).replace("rank      : 1", "rank      : 1")
    refused = TORCHRUN_TAIL.format(code=2).replace("rank      : 1", "rank      : 0")
    code, shown = report_of("looplm: error: rank 0: model lm1 reads exactly 3 tokens\n" + stopped + refused)
    assert code == 2 and shown.count("\n") == 1


def test_a_bug_in_a_rank_is_one_line_naming_it():
    bug = "Traceback (most recent call last):\n  File \"x.py\", line 1\nZeroDivisionError: division by zero\n"
    code, shown = report_of(bug + TORCHRUN_TAIL.format(code=1))
    assert code == 1 and shown.count("\n") == 1
    assert "rank 1 failed (ZeroDivisionError: division by zero)" in shown


def test_ctrl_c_is_130_and_said_once():
    said = ("looplm: interrupted at epoch 0, batch 8: checkpoint saved in r/checkpoint-000000; continue with: x\n"
            "looplm: interrupted\n")
    code, shown = report_of(said + TORCHRUN_TAIL.format(code=130), interrupted=True)
    assert code == 130 and shown.count("\n") == 1


TORCHRUN_SIGINT = """Traceback (most recent call last):
  File "/x/torch/distributed/run.py", line 900, in <module>
torch.distributed.elastic.multiprocessing.api.SignalException: Process 4240 got signal: 2
"""


@pytest.mark.parametrize("torchrun_says", [TORCHRUN_SIGINT, TORCHRUN_TAIL.format(code=-15)])
def test_ctrl_c_the_launcher_missed_is_130_when_a_rank_says_so(torchrun_says):
    """The SIGINT can land outside the launcher's read loop while torchrun reports only its own
    SignalException (or the SIGTERM it sent): the ranks' line still makes the job a Ctrl-C."""
    said = "looplm: interrupted at epoch 3, batch 2: checkpoint saved in r/checkpoint-000003; continue with: x\n"
    code, shown = report_of(said + torchrun_says, code=1, interrupted=False)
    assert code == 130 and shown == said


def test_a_failure_without_any_rank_interrupted_is_not_130():
    code, _ = report_of(TORCHRUN_SIGINT, code=1, interrupted=False)
    assert code == 1


def test_resume_with_an_nproc_that_does_not_split_the_runs_bs(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--model", "lstm", "--set", "n_hidden=8", "--set", "emb_sz=8", "--bs", "64", "--sl", "8",
                 "--epochs", "1", "--quiet", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--nproc", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--bs 64" in err and "--nproc 2, 4, 8, 16, 32, 64" in err


@pytest.mark.slow
def test_a_job_whose_ranks_refuse_is_one_line_and_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "looplm", "train", "--nproc", "2", "--data", "human-numbers",
                           "--model", "lm1", "--sl", "16", "--bs", "8", "--epochs", "1", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "exactly 3" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_ctrl_c_under_nproc_is_130_and_one_line(tmp_path):
    """Ctrl-C at a terminal reaches the launcher, torchrun and the ranks (one process group)."""
    import os
    import signal
    import time

    run = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "looplm", "train", "--nproc", "2", "--data", "human-numbers",
                             "--model", "lstm", "--set", "n_hidden=16", "--set", "emb_sz=8", "--bs", "8", "--sl", "8",
                             "--epochs", "50", "--quiet", "--out", str(run)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 240
    while not any(run.glob("checkpoint-*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err
    assert err.count("\n") == 1 and "looplm train --resume" in err and "Traceback" not in err
