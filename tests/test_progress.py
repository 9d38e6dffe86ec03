"""Progress off a terminal: plain lines, never carriage-return fragments."""

import io
import subprocess
import sys

from looplm.progress import progress


def test_plain_progress_off_a_terminal():
    stream = io.StringIO()
    assert list(progress(range(5), 5, desc="epoch 0", stream=stream, every=0.0)) == list(range(5))
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and lines[-1].startswith("epoch 0: 5/5 updates in")
    assert len(lines) == 5  # every=0: a line after each update, the last one saying it is done
    quiet = io.StringIO()
    assert list(progress(range(3), 3, stream=quiet, enabled=False)) == [0, 1, 2] and quiet.getvalue() == ""


def test_a_training_log_written_to_a_file_has_no_carriage_returns(tmp_path):
    log = tmp_path / "train.err"
    with open(log, "w") as err:
        code = subprocess.call([sys.executable, "-m", "looplm", "train", "--model", "lm4", "--epochs", "2",
                                "--bs", "16", "--sl", "8", "--set", "n_hidden=16", "--out", str(tmp_path / "run")],
                               stdout=subprocess.DEVNULL, stderr=err)
    assert code == 0
    text = log.read_text()
    assert "\r" not in text
    assert [line.split(":")[0] for line in text.splitlines()] == ["epoch 0", "epoch 1"]  # one line per epoch


def test_an_epoch_stopped_inside_its_stream_still_prints_its_line():
    stream = io.StringIO()
    for i in progress(range(10), 10, desc="epoch 3", stream=stream, every=1e9):
        if i == 3:
            break  # the learner's planned stop, after its fourth update
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("epoch 3: 4/10 updates in")
