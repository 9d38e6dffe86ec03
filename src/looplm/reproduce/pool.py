"""Independent training runs side by side: ``jobs`` worker processes, each with its share of the cores.

The chapter's models are small (hidden 64): one run spends most of a step in small matmuls
and in Python, so a second thread inside a run buys little (the chapter measured 27.5 s
with two threads against 28.4 s with one on a 2-core CPU), while a second run on the other
core buys most of it (each run took ~1.3x its time alone there: 21.5 s for all seven). The runs do not depend on each other, so they are dealt out
to the workers, the longest first (each worker takes the next one when it is free)::

    runs, longest first:  lm7  lm6  lm5  lm4  lm3  lm2  lm1
    worker 0 (1 thread):  lm7 ───────────┐ lm4 ───┐ lm3 ────┐
    worker 1 (1 thread):  lm6 ──────────┐ lm5 ───────┐ lm2 ─┐ lm1 ─┐

A run's result does not depend on which worker trains it: each run seeds itself, and a worker's
thread count is fixed, so ``jobs=2`` on 2 cores gives the numbers of ``jobs=1`` with one thread.

Workers are started with ``spawn`` (no fork of a process that holds torch's thread pools) and
ignore Ctrl-C: the parent catches it, stops them and says so once.
"""

from __future__ import annotations

import multiprocessing
import signal
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterator, Sequence, TypeVar

import torch

from looplm.errors import LooplmError

Task = TypeVar("Task")
Outcome = TypeVar("Outcome")


def threads_per_job(jobs: int, threads: int | None = None) -> int:
    """Each worker's torch threads: this process's threads shared out, at least one each."""
    return max(1, (threads or torch.get_num_threads()) // jobs)


def _start_worker(threads: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the pool on Ctrl-C
    torch.set_num_threads(threads)


def run_tasks(fn: Callable[[Task], Outcome], tasks: Sequence[Task], jobs: int,
              cost: Callable[[Task], float]) -> Iterator[tuple[Task, Outcome]]:
    """Yield ``(task, fn(task))`` for every task: in order in this process when ``jobs`` is 1
    (progress bars can show), else as they finish in ``jobs`` workers (:func:`run_side_by_side`)."""
    if jobs == 1:
        for task in tasks:
            yield task, fn(task)
        return
    for index, outcome in run_side_by_side(fn, tasks, jobs, cost):
        yield tasks[index], outcome


def run_side_by_side(fn: Callable[[Task], Outcome], tasks: Sequence[Task], jobs: int,
                     cost: Callable[[Task], float]) -> Iterator[tuple[int, Outcome]]:
    """Yield ``(index into tasks, fn(task))`` as the runs finish, ``jobs`` at a time.

    ``fn`` must be a module-level function (it is pickled to the workers), ``cost`` an estimate
    of a task's time: the costliest start first. An exception in a run is raised here, and a
    worker that dies (killed, out of memory) is reported in one line; either way the other
    workers are stopped first.
    """
    order = sorted(range(len(tasks)), key=lambda i: -cost(tasks[i]))
    pool = ProcessPoolExecutor(min(jobs, len(tasks)), mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(threads_per_job(jobs),))
    finished = False
    try:
        futures = {pool.submit(fn, tasks[i]): i for i in order}  # workers take them in this order
        for future in as_completed(futures):
            yield futures[future], future.result()
        finished = True
    except BrokenProcessPool:
        raise LooplmError(f"a worker process of --jobs {jobs} died before its run ended (killed, or out of "
                          "memory?): run again, with fewer --jobs if memory is short") from None
    finally:
        if not finished:
            _stop(pool)
        pool.shutdown(wait=True, cancel_futures=True)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Stop the workers now, mid-run (Ctrl-C, an error): a plain shutdown would wait for their runs."""
    if hasattr(pool, "terminate_workers"):  # Python >= 3.14
        pool.terminate_workers()
        return
    for process in list((pool._processes or {}).values()):  # no public way before 3.14
        process.terminate()
