"""The command line, fuzzed: hypothesis draws commands from a grammar of good and bad flag
values, runs each in-process in a temporary folder, and checks the CLI's promise:

* the exit code is 0 (done), 2 (refused) or 3 (training turned non-finite), never a traceback;
* a refused command prints one line and changes nothing in its folder (byte for byte).

The folder holds a data file, a finished run, a folder that is not a run and a FIFO. Good
values keep every good command tiny (one epoch of a 8-unit LSTM on 2 KB of text), and most
drawn commands hold at least one bad value, so 500 commands take well under a minute.
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from conftest import folder_state
from looplm.cli.main import main

N_COMMANDS = 500
TEXT = "the cat sat on the mat. the dog sat on the log.\n" * 40

BAD_FLOAT = ["nan", "inf", "-inf", "-1", "1e308", "-1e-300", "abc", "", "1e-310", "0x10", "1e999"]
BAD_INT = ["-1", "0", "1000000000000", str(2**63), str(2**64), "1.5", "x", "99999999999999999999", "", "1e3"]
BAD_SEED = ["-1", str(2**63), str(2**64), "1.5", "x", ""]
BAD_PATH = ["{w}/missing.txt", "{w}/notes", "{w}/fifo.txt", "{w}/run", "{w}/\udcff.txt", "{w}", ""]
BAD_OUT = ["{w}/d.txt", "{w}/run", "{w}/notes", "{w}/notes/x/y", "{w}/d.txt/x", "{w}/\udcffout", "{w}/fifo.txt"]
BAD_RUN = ["{w}/notes", "{w}/missing", "{w}/d.txt", "{w}/fifo.txt", "{w}/\udcffrun", "{w}/run/checkpoint-000000"]
BAD_TOKENIZER = ["bpe:99999999999999999999", "bpe:-1", "bpe:", "bpe:10", "word:0", "xyz", "", "char:5"]


def value(good: list[str], bad: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(good), st.sampled_from(bad))


def flags(**choices: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    """``--name value`` pairs, each drawn or left out (a flag left out takes its default)."""
    parts = [st.one_of(st.just([]), s.map(lambda v, n=name: [f"--{n.replace('_', '-')}", v]))
             for name, s in choices.items()]
    return st.tuples(*parts).map(lambda ps: [a for p in ps for a in p])


TINY = ["--model", "lstm", "--emb-sz", "8", "--n-hidden", "8", "--n-layers", "1"]
LR = value(["1e-2", "3e-3"], BAD_FLOAT)
TRAIN = st.tuples(
    st.just(["train", "--data"]), value(["{w}/d.txt"], BAD_PATH).map(lambda v: [v]), st.just(TINY),
    st.just(["--epochs"]), value(["1"], BAD_INT).map(lambda v: [v]),
    flags(bs=value(["2", "4"], BAD_INT + ["100000"]), sl=value(["4", "8"], BAD_INT + ["100000"]), lr=LR,
          wd=value(["0", "0.1"], BAD_FLOAT), seed=value(["0", str(2**63 - 1)], BAD_SEED),
          alpha=value(["0"], BAD_FLOAT + ["2"]), clip=value(["1"], BAD_FLOAT), tokenizer=value(["char", "word"], BAD_TOKENIZER),
          valid_pct=value(["0.2"], BAD_FLOAT + ["1", "0"]), dist_timeout=value(["30"], BAD_FLOAT),
          overlap=value(["1"], BAD_INT), n_hidden=value(["8"], BAD_INT + ["200000"])),
    st.sampled_from([["--moms", "0.9", "0.8", "0.9"], ["--moms", "nan", "nan", "nan"], ["--moms", "5", "5", "5"],
                     ["--moms", "0.9"], ["--moms", "1", "0.5", "0.5"], []]),
    st.just(["--quiet", "--out"]), value(["{w}/new/run"], BAD_OUT).map(lambda v: [v]),
    st.sampled_from([[], ["--overwrite"]]),
)
RESUME = st.tuples(st.just(["train", "--resume"]), value(["{w}/run"], BAD_RUN).map(lambda v: [v]),
                   st.sampled_from([["--quiet"], ["--quiet", "--out", "{w}/x"]]))
LR_FIND = st.tuples(
    st.just(["lr-find", "--data", "{w}/d.txt", "--model", "lstm", "--set", "emb_sz=8", "--set", "n_hidden=8"]),
    flags(num_it=value(["5"], BAD_INT + ["1"]), start_lr=value(["1e-5"], BAD_FLOAT + ["100"]),
          end_lr=value(["1"], BAD_FLOAT), bs=value(["4"], BAD_INT), sl=value(["8"], BAD_INT),
          seed=value(["1"], BAD_SEED)),
    st.just(["--out"]), value(["{w}/new/lr.png"], BAD_OUT).map(lambda v: [v]), st.sampled_from([[], ["--overwrite"]]),
)
DATA = st.tuples(
    st.sampled_from([["data", "describe"], ["data", "export"]]),
    value(["{w}/d.txt", "human-numbers"], BAD_PATH + ["nowhere"]).map(lambda v: [v]),
    flags(tokenizer=value(["char", "word", "word:5"], BAD_TOKENIZER), seed=value(["0"], BAD_SEED),
          valid_pct=value(["0.1"], BAD_FLOAT)),
    value(["{w}/new/out.txt"], BAD_OUT).map(lambda v: ["--out", v]),
).map(lambda t: list(t) if t[0][1] == "export" else list(t[:3]))
BORBORZAN = st.tuples(st.just(["data", "describe", "borborzan"]),
                      flags(games=value(["20"], BAD_INT), seed=value(["0"], BAD_SEED),
                            players=value(["random,random"], ["x", "random", ",", "random,random,random"])))
GENERATE = st.tuples(
    st.just(["generate"]), value(["{w}/run"], BAD_RUN).map(lambda v: ["--run", v]),
    st.sampled_from([["--prompt", "the"], ["--prompt", "ZZZ"], ["--prompt", ""]]),
    flags(n=value(["3"], BAD_INT), temperature=value(["0", "0.5", "1"], BAD_FLOAT),
          top_k=value(["2"], BAD_INT), top_p=value(["0.9"], BAD_FLOAT + ["1.5"]), seed=value(["0"], BAD_SEED)),
)
EVAL = st.tuples(st.just(["eval"]), value(["{w}/run"], BAD_RUN).map(lambda v: ["--run", v]),
                 flags(bs=value(["2"], BAD_INT), sl=value(["8"], BAD_INT), warmup=value(["0"], BAD_INT),
                       file=value(["{w}/d.txt"], BAD_PATH)))
PLAY = st.tuples(st.just(["play", "borborzan", "--vs", "random"]), value(["{w}/run"], BAD_RUN).map(lambda v: ["--run", v]),
                 flags(games=value(["5"], BAD_INT), seed=value(["0"], BAD_SEED), max_pairs=value(["5"], BAD_INT)))
REPRODUCE = st.tuples(st.just(["reproduce", "chapter12"]),  # only refused ones: a good one trains seven models
                      st.sampled_from([["--seed", v] for v in BAD_SEED] + [["--epochs", v] for v in BAD_INT]
                                      + [["--seeds", "0,-1"], ["--out", "{w}/run"], ["--out", "{w}/d.txt"]]))
COMMANDS = st.one_of(TRAIN, RESUME, LR_FIND, DATA, BORBORZAN, GENERATE, EVAL, PLAY, REPRODUCE).map(
    lambda parts: [a for part in parts for a in part])


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-template")
    (root / "d.txt").write_text(TEXT)
    assert main(["train", "--data", str(root / "d.txt"), *TINY, "--bs", "4", "--sl", "8", "--epochs", "1",
                 "--quiet", "--out", str(root / "run")]) == 0
    (root / "notes").mkdir()
    (root / "notes" / "thesis.tex").write_text("years of work")
    return root


@settings(max_examples=N_COMMANDS, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(argv=COMMANDS)
def test_any_command_exits_0_2_or_3_and_a_refusal_changes_nothing(template, capsys, argv):
    with tempfile.TemporaryDirectory(dir=template.parent) as tmp:
        w = Path(tmp) / "w"
        shutil.copytree(template, w)
        os.mkfifo(w / "fifo.txt")
        before = folder_state(w)
        args = [a.replace("{w}", str(w)) for a in argv]
        code = main(args)
        err = capsys.readouterr().err
        event(f"{argv[0]} exit {code}")  # --hypothesis-show-statistics shows the mix
        assert code in (0, 2, 3), (args, err)
        assert "Traceback" not in err, (args, err)
        if code == 2:
            assert err.splitlines()[-1].startswith("looplm: error: "), (args, err)
            assert folder_state(w) == before, args
