"""Data-parallel training: 2 ranks on gloo equal one process with the same global batch.

The ranks are real processes: ``python -m looplm train`` started with torchrun's environment
(RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), or through ``looplm train --nproc 2``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from looplm import distributed
from looplm.cli.launch import strip_nproc
from looplm.checkpoint import latest_checkpoint
from looplm.cli.main import main
from looplm.data.batching import check_divisible
from looplm.errors import LooplmError

SMALL = ["--data", "human-numbers", "--model", "lstm", "--set", "n_hidden=32", "--set", "emb_sz=16",
         "--set", "p=0", "--bs", "64", "--sl", "16", "--lr", "3e-3", "--seed", "3"]
JOB_TIMEOUT = 120  # seconds: a hang fails the test instead of blocking the suite


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ranks(argvs: list[list[str]], port: int | None = None) -> list[subprocess.Popen]:
    """One ``python -m looplm`` per argv, as ranks 0.. of one job on 127.0.0.1."""
    port = port or free_port()
    procs = []
    for rank, argv in enumerate(argvs):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(len(argvs)),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, "-m", "looplm", *argv], env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    return procs


def finish(procs: list[subprocess.Popen], timeout: float = JOB_TIMEOUT) -> list[tuple[int, str, str]]:
    """(returncode, stdout, stderr) of every rank; kills the job and fails if it takes too long."""
    deadline, results = time.monotonic() + timeout, []
    try:
        for p in procs:
            out, err = p.communicate(timeout=max(deadline - time.monotonic(), 0.1))
            results.append((p.returncode, out, err))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail(f"the job did not end within {timeout} s")
    return results


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def max_difference(a: Path, b: Path) -> float:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    return max((wa[k] - wb[k]).abs().max().item() for k in wa)


def valid_losses(run: Path) -> list[float]:
    with open(run / "metrics.csv", newline="") as f:
        return [float(row["valid_loss"]) for row in csv.DictReader(f)]


def single_process(out: Path, argv: list[str]) -> None:
    assert main(["train", *argv, "--quiet", "--out", str(out)]) == 0


def test_two_ranks_train_the_weights_of_one_process_at_k1_lt_k2(tmp_path):
    argv = [*SMALL, "--epochs", "1", "--k1", "8", "--k2", "24"]  # stored TBPTT: chained backward passes
    job = start_ranks([["train", *argv, "--quiet", "--out", str(tmp_path / "ddp")]] * 2)
    single_process(tmp_path / "one", argv)
    for code, out, err in finish(job):
        assert code == 0, err
    assert max_difference(tmp_path / "one", tmp_path / "ddp") < 1e-6
    assert valid_losses(tmp_path / "ddp") == pytest.approx(valid_losses(tmp_path / "one"), abs=1e-6)
    assert latest_checkpoint(tmp_path / "ddp") is not None


def test_nproc_2_trains_the_weights_of_one_process_at_k1_eq_k2(tmp_path):
    """``looplm train --nproc 2`` runs torchrun; only rank 0 prints the table."""
    argv = [*SMALL, "--epochs", "1", "--k1", "16", "--k2", "16"]
    job = subprocess.Popen([sys.executable, "-m", "looplm", "train", "--nproc", "2", *argv,
                            "--out", str(tmp_path / "ddp")], text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    single_process(tmp_path / "one", argv)
    [(code, out, err)] = finish([job])
    assert code == 0, err
    assert out.count("train_loss") == 1 and out.count("saved ") == 1  # one table, from rank 0
    assert max_difference(tmp_path / "one", tmp_path / "ddp") < 1e-6
    assert valid_losses(tmp_path / "ddp") == pytest.approx(valid_losses(tmp_path / "one"), abs=1e-6)


def test_interrupted_job_resumes_to_the_uninterrupted_weights(tmp_path):
    """Variable sequence lengths: every rank draws the same lengths; the checkpoint holds the
    full hidden state, which each rank slices again."""
    argv = [*SMALL, "--epochs", "2", "--variable-sl"]
    run = tmp_path / "ddp"
    job = start_ranks([["train", *argv, "--out", str(run)]] * 2)
    deadline = time.monotonic() + JOB_TIMEOUT
    while latest_checkpoint(run) is None and time.monotonic() < deadline and job[1].poll() is None:
        time.sleep(0.05)
    job[1].send_signal(signal.SIGINT)  # Ctrl-C reaching one rank stops both at the same batch
    single_process(tmp_path / "one", argv)
    results = finish(job)
    assert [code for code, _, _ in results] == [130, 130], results[0][2]
    assert "looplm train --resume" in results[0][2]
    shutil.copytree(run, tmp_path / "alone")  # the checkpoint is the single-process format
    for code, out, err in finish(start_ranks([["train", "--resume", str(run), "--quiet"]] * 2)):
        assert code == 0, err
    assert main(["train", "--resume", str(tmp_path / "alone"), "--quiet"]) == 0
    for resumed in (run, tmp_path / "alone"):
        assert max_difference(tmp_path / "one", resumed) < 1e-6
        assert valid_losses(resumed) == pytest.approx(valid_losses(tmp_path / "one"), abs=1e-6)


def test_an_interrupted_tbptt_job_resumes_mid_epoch_to_the_uninterrupted_weights(tmp_path):
    """TBPTT(8, 24): each rank's stream holds its rows of the windows' states and inputs; the
    checkpoint gathers them, and a resumed rank (or one process) takes its own again."""
    argv = [*SMALL, "--epochs", "2", "--k1", "8", "--k2", "24", "--tbptt-mode", "recompute"]
    run = tmp_path / "ddp"
    job = start_ranks([["train", *argv, "--out", str(run)]] * 2)
    deadline = time.monotonic() + JOB_TIMEOUT
    while latest_checkpoint(run) is None and time.monotonic() < deadline and job[1].poll() is None:
        time.sleep(0.05)
    job[1].send_signal(signal.SIGINT)
    single_process(tmp_path / "one", argv)
    results = finish(job)
    assert [code for code, _, _ in results] == [130, 130], results[0][2]
    assert json.loads((latest_checkpoint(run) / "trainer.json").read_text())["batch"] > 0  # inside an epoch
    shutil.copytree(run, tmp_path / "alone")
    for code, out, err in finish(start_ranks([["train", "--resume", str(run), "--quiet"]] * 2)):
        assert code == 0, err
    assert main(["train", "--resume", str(tmp_path / "alone"), "--quiet"]) == 0
    differences = [max_difference(tmp_path / "one", resumed) for resumed in (run, tmp_path / "alone")]
    assert max(differences) < 1e-6, differences
    for resumed in (run, tmp_path / "alone"):
        assert valid_losses(resumed) == pytest.approx(valid_losses(tmp_path / "one"), abs=1e-6)


def test_different_settings_on_two_ranks_are_refused(tmp_path):
    argv = [*SMALL, "--epochs", "1", "--quiet", "--dist-timeout", "30"]
    job = start_ranks([["train", *argv, "--out", str(tmp_path / "a")],
                       ["train", *argv, "--wd", "0.1", "--out", str(tmp_path / "a")]])
    errors = []
    for code, out, err in finish(job, timeout=60):
        assert code == 2 and err.count("\n") == 1
        assert "1 rank(s) were started with other settings than rank 0" in err
        errors.append(err)
    assert "(this rank: settings.wd: 0.01 on rank 0, 0.1 here)" in errors[1]
    assert not (tmp_path / "a" / "model.safetensors").exists()


def test_a_rank_that_dies_ends_the_others(tmp_path):
    argv = [*SMALL, "--epochs", "30", "--quiet", "--out", str(tmp_path / "a")]
    job = start_ranks([["train", *argv]] * 2)
    deadline = time.monotonic() + JOB_TIMEOUT
    while not (tmp_path / "a" / "config.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    job[1].kill()
    start = time.monotonic()
    (code, _, err), _ = finish(job, timeout=60)
    assert time.monotonic() - start < 30
    assert code == 2 and "another rank of the job ended or cannot be reached" in err


def test_bs_not_divisible_by_the_world_size(tmp_path, monkeypatch, capsys):
    argv = ["train", *SMALL, "--bs", "63", "--epochs", "1", "--out", str(tmp_path / "a")]
    assert main([*argv, "--nproc", "2"]) == 2  # refused before torchrun starts
    assert "--bs 63 is not divisible by the world size 2" in capsys.readouterr().err
    for name, value in (("RANK", "1"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "9")):
        monkeypatch.setenv(name, value)
    assert main(argv) == 2  # under torchrun: before the rendezvous
    err = capsys.readouterr().err
    assert err.startswith("looplm: error: rank 1: --bs 63 is not divisible by the world size 2") and "--bs 62" in err


@pytest.mark.parametrize("rank", [0, 1])
def test_an_unreachable_rendezvous_fails_within_the_timeout(tmp_path, monkeypatch, capsys, rank):
    """Rank 1 finds nobody at MASTER_ADDR:MASTER_PORT; rank 0 waits for a rank 1 that never comes."""
    for name, value in (("RANK", str(rank)), ("LOCAL_RANK", str(rank)), ("WORLD_SIZE", "2"),
                        ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", str(free_port()))):
        monkeypatch.setenv(name, value)
    start = time.monotonic()
    code = main(["train", *SMALL, "--epochs", "1", "--quiet", "--dist-timeout", "2", "--out", str(tmp_path / "a")])
    assert time.monotonic() - start < 30
    assert code == 2
    err = capsys.readouterr().err
    assert f"looplm: error: rank {rank}: rank {rank} of 2 could not join the rendezvous at 127.0.0.1:" in err
    assert "--dist-timeout" in err
    assert not torch.distributed.is_initialized()


def test_helpers():
    assert strip_nproc(["train", "--nproc", "2", "--bs", "8", "--nproc=3"]) == ["train", "--bs", "8"]
    check_divisible(64, 4)
    with pytest.raises(LooplmError, match="use a multiple of 3"):
        check_divisible(64, 3)
    assert distributed._differences({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 3}}) == [
        "b.c: 2 on rank 0, 3 here"]
    assert distributed.rank_prefix() == ""
