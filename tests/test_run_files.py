"""Crafted run files are refused with one line (exit code 2) and change nothing: every JSON
run file is checked against one schema (looplm.schema), every run file's type in one place
(looplm.files), and weights' shapes are read from the safetensors header before a model is
built."""

import json
import os
import shutil

import pytest
import torch
import torch.utils._pytree as pytree
from safetensors.torch import load_file, save_file

from looplm.checkpoint import latest_checkpoint
from looplm.cli.main import main

TEXT = "the cat sat on the mat. the dog sat on the log.\n" * 40
TINY = ["--model", "lstm", "--emb-sz", "8", "--n-hidden", "8", "--n-layers", "1", "--bs", "4", "--sl", "8"]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("runfiles")
    (root / "d.txt").write_text(TEXT)
    assert main(["train", "--data", str(root / "d.txt"), *TINY, "--epochs", "1", "--quiet", "--out", str(root / "run")]) == 0
    config = json.loads((root / "run" / "config.json").read_text())
    config["training"]["epochs"] = 2  # so that resume has work to do
    (root / "run" / "config.json").write_text(json.dumps(config))
    return root / "run"


@pytest.fixture
def run(template, tmp_path):
    shutil.copytree(template, tmp_path / "run")
    return tmp_path / "run"


def edit_json(name):
    def edit(change):
        def apply(run):
            path = run / name if "/" not in name else latest_checkpoint(run) / name.split("/")[1]
            data = json.loads(path.read_text())
            change(data)
            path.write_text(json.dumps(data))
        return apply
    return edit


def edit_tensors(change):
    def apply(run):
        path = latest_checkpoint(run) / "trainer.safetensors"
        tensors = load_file(str(path))
        change(tensors)
        save_file(tensors, str(path))
    return apply


def deep(name):
    def apply(run):
        (run / name).write_text("[" * 200_000 + "]" * 200_000)
    return apply


def fifo(name):
    def apply(run):
        path = run / name if "/" not in name else latest_checkpoint(run) / name.split("/")[1]
        path.unlink()
        os.mkfifo(path)
    return apply


ONE_TENSOR = pytree.treespec_dumps(pytree.tree_flatten(torch.zeros(1))[1])


def first_opt(tensors):
    return next(k for k in tensors if k.startswith("opt.") and k.endswith("exp_avg"))


config, vocab, trainer = edit_json("config.json"), edit_json("vocab.json"), edit_json("checkpoint/trainer.json")
CASES = {
    "config nested 200k deep": deep("config.json"),
    "vocab nested 200k deep": deep("vocab.json"),
    "config is a FIFO": fifo("config.json"),
    "vocab is a FIFO": fifo("vocab.json"),
    "tokenizer is a FIFO": fifo("tokenizer.json"),
    "weights are a FIFO": fifo("model.safetensors"),
    "model_config extra key": config(lambda c: c["model"].update(colour="blue")),
    "model_config wrong type": config(lambda c: c["model"].update(n_hidden="8")),
    "model_config n_hidden 12000": config(lambda c: c["model"].update(n_hidden=12000)),
    "model unknown": config(lambda c: c["model"].update(name="lm99")),
    "train.bs a string": config(lambda c: c["training"].update(bs="4")),
    "train.moms too short": config(lambda c: c["training"].update(moms=[0.9, 0.8])),
    "train.moms out of range": config(lambda c: c["training"].update(moms=[5, 5, 5])),
    "train.lr nan": config(lambda c: c["training"].update(lr=float("nan"))),
    "config a list": config(lambda c: c.clear()),
    "vocab itos not a list": vocab(lambda v: v.update(itos="abc")),
    "vocab extra key": vocab(lambda v: v.update(colour=1)),
    "tokenizer empty object": lambda run: (run / "tokenizer.json").write_text("{}"),
}
RESUME_CASES = {
    "trainer epoch a string": trainer(lambda t: t.update(epoch="0")),
    "trainer batch -5": trainer(lambda t: t.update(batch=-5)),
    "trainer bad history row": trainer(lambda t: t.update(history=[{"epoch": "x"}])),
    "trainer history row extra key": trainer(lambda t: t.update(history=[{"colour": 1}])),
    "trainer param_groups mismatched": trainer(lambda t: t.update(param_groups=t["param_groups"][:1])),
    "trainer param_groups not a list": trainer(lambda t: t.update(param_groups=7)),
    "trainer state kind unknown": trainer(lambda t: t.update(state="tuple:99")),
    "trainer unknown key": trainer(lambda t: t.update(colour=1)),
    "rng of the wrong dtype": edit_tensors(lambda t: t.update(rng=t["rng"].float())),
    "rng of the wrong shape": edit_tensors(lambda t: t.update(rng=t["rng"][:10])),
    "optimiser moment of the wrong shape": edit_tensors(lambda t: t.update({first_opt(t): torch.zeros(3)})),
    "hidden state of the wrong shape": lambda run: (trainer(lambda t: t.update(state_spec=ONE_TENSOR))(run),
                                                    edit_tensors(lambda t: t.update({"state.0": torch.zeros(1, 3, 8)}))(run)),
    "hidden state structure unreadable": trainer(lambda t: t.update(state_spec="[1, {\"x\": 2}]")),
    "hidden state tensor missing": lambda run: (trainer(lambda t: t.update(state_spec=ONE_TENSOR, state_none=[]))(run),
                                                edit_tensors(lambda t: t.pop("state.0", None))(run)),
    "hidden state None leaves out of range": trainer(lambda t: t.update(state_none=[5])),
    "hidden state None leaves not ints": trainer(lambda t: t.update(state_none=["0"])),
    "checkpoint weights are a FIFO": fifo("checkpoint/model.safetensors"),
    "trainer.json is a FIFO": fifo("checkpoint/trainer.json"),
}
EVAL = ["eval", "--run", "{run}"]
GENERATE = ["generate", "--run", "{run}", "--prompt", "the", "--n", "3"]
RESUME = ["train", "--resume", "{run}", "--quiet"]


def refused(run, argv, capsys, snapshot):
    before = snapshot(run)
    code = main([a.format(run=run) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("looplm: error: ") and "Traceback" not in err
    assert snapshot(run) == before


@pytest.mark.parametrize("argv", [EVAL, GENERATE, RESUME], ids=["eval", "generate", "resume"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_crafted_run_file_is_refused(run, capsys, snapshot, argv, case):
    if case == "weights are a FIFO" and argv is RESUME:
        pytest.skip("resume reads the checkpoint's weights, not the final ones")
    CASES[case](run)
    refused(run, argv, capsys, snapshot)


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_a_crafted_checkpoint_is_refused(run, capsys, snapshot, case):
    RESUME_CASES[case](run)
    refused(run, RESUME, capsys, snapshot)


def test_the_untouched_run_resumes(run, capsys):
    assert main(RESUME[:2] + [str(run), "--quiet"]) == 0
