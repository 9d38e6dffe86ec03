"""``looplm reproduce chapter12 --jobs N``: runs trained side by side in worker processes give
the numbers of one process with the workers' thread count, and stop cleanly on Ctrl-C."""

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from looplm.cli.main import main
from looplm.errors import LooplmError
from looplm.reproduce.borborzan import reproduce_borborzan
from looplm.reproduce.chapter12 import reproduce_chapter12
from looplm.reproduce.pool import run_side_by_side, threads_per_job
from looplm.reproduce.report import environment_line


def test_two_jobs_give_the_curves_of_one_process_with_one_thread():
    quiet = dict(device="cpu", log=lambda line: None, progress=False, only=["lm1", "lm4", "lm5"], epochs=2)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # two jobs: one thread each
        side_by_side = reproduce_chapter12([0, 1], jobs=2, **quiet)
        torch.set_num_threads(1)
        in_order = reproduce_chapter12([0, 1], jobs=1, **quiet)
    finally:
        torch.set_num_threads(threads)
    assert [m.recipe.model for m in side_by_side.models] == ["lm1", "lm4", "lm5"]  # the chapter's order
    for a, b in zip(side_by_side.models, in_order.models):
        assert a.curves == b.curves and a.bits_per_byte == b.bits_per_byte
        assert a.errors == b.errors and a.errors is not None  # analysed once, on the first seed
        assert all(c[-1] > 0.25 for c in a.curves.values())  # they learned (the most frequent token: 0.15)
    assert side_by_side.jobs == 2 and 0 < side_by_side.wall_seconds
    each = threads_per_job(2)
    assert f"(2 runs at a time, {each} torch thread(s) each)" in environment_line([0, 1], side_by_side.jobs)
    assert side_by_side.seconds_per_seed[0] == pytest.approx(sum(m.seconds[0] for m in side_by_side.models))


def test_the_games_two_at_a_time_give_the_losses_of_one_process_with_one_thread():
    quiet = dict(games=3000, device="cpu", log=lambda line: None, progress=False, only=["lm1", "lm4", "lm7"],
                 epochs=2, limit_games=4000)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        side_by_side = reproduce_borborzan([0], jobs=2, **quiet)
        torch.set_num_threads(1)
        in_order = reproduce_borborzan([0], jobs=1, **quiet)
    finally:
        torch.set_num_threads(threads)
    assert [r.run.model for r in side_by_side.runs] == ["lm1", "lm4", "lm7"]
    for a, b in zip(side_by_side.runs, in_order.runs):
        assert a.losses == b.losses and a.accuracies == b.accuracies and a.text == b.text
    assert side_by_side.runs[1].losses[0][-1] < 0.75  # lm4 learned the game (a uniform guess: ~2.5 nats)
    assert side_by_side.limits == in_order.limits


def test_outcomes_come_back_with_their_task_and_the_longest_start_first():
    tasks = [4.0, 81.0, 9.0, 16.0]
    got = dict(run_side_by_side(math.sqrt, tasks, jobs=2, cost=lambda x: x))
    assert got == {0: 2.0, 1: 9.0, 2: 3.0, 3: 4.0}
    assert threads_per_job(2, threads=2) == 1 and threads_per_job(4, threads=2) == 1 and threads_per_job(2, 8) == 4


def test_an_error_in_a_run_is_raised_in_the_parent():
    with pytest.raises(ValueError, match="math domain error"):
        list(run_side_by_side(math.sqrt, [4.0, -1.0, 9.0], jobs=2, cost=lambda x: 0))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc (Linux)")
def sqrt_or_die(x: float) -> float:
    """A run whose worker is killed (as the kernel's OOM killer would) when x is negative."""
    if x < 0:
        os.kill(os.getpid(), signal.SIGKILL)
    return math.sqrt(x)


def test_a_worker_that_dies_is_one_clear_error_not_a_hang():
    with pytest.raises(LooplmError, match="a worker process of --jobs 2 died"):
        list(run_side_by_side(sqrt_or_die, [4.0, -1.0, 9.0, 16.0], jobs=2, cost=lambda x: 0))


def test_ctrl_c_stops_the_workers_with_one_line_130_and_no_report(tmp_path):
    out = tmp_path / "ch12"
    proc = subprocess.Popen([sys.executable, "-m", "looplm", "reproduce", "chapter12", "--jobs", "2", "--quiet",
                             "--only", "lm1,lm4,lm7", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=catch_sigint)
    first = proc.stdout.readline()  # lm7 and lm4 start first; lm4 ends first, lm7 is still training
    os.killpg(proc.pid, signal.SIGINT)
    rest, err = proc.communicate(timeout=120)
    assert first.startswith("seed 0  LMModel4"), first + rest + err
    assert proc.returncode == 130, err
    assert err == "looplm: interrupted\n"
    assert not (out / "REPORT.md").exists()
    assert live_processes_in_group(proc.pid) == []  # no worker outlives the command


def catch_sigint() -> None:
    """In the child: SIGINT as at a terminal. A suite started in the background by a non-interactive
    shell inherits SIGINT ignored, and Python then leaves it ignored (as it should: a background
    job is not stopped by the terminal's Ctrl-C), so the command would run to its end."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def live_processes_in_group(pgid: int) -> list[int]:
    """Processes of the group that still run (zombies left to a PID 1 that does not reap are not)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended while we looked
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append(int(stat.parent.name))
    return live


@pytest.mark.parametrize("argv, message", [
    (["chapter12", "--jobs", "0"], "--jobs"),
    (["borborzan", "--jobs", "-1"], "--jobs"),
])
def test_bad_jobs_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    code = main(["reproduce", *argv, "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
