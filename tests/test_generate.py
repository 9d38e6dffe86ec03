"""Generation: the sampling rules by hand, O(n) stepping, seeds, the CLI and its bad input."""

import json
import math

import pytest
import torch
from torch import nn

from looplm.cli.main import main
from looplm.data.tokenize import UNK, fit_tokenizer
from looplm.errors import LooplmError
from looplm.generate import SampleConfig, generate, next_token_probs, sample_ids
from looplm.models import build_model

TEXT = "to be or not to be, that is the question.\n" * 40
MODELS = {"rnn": ("lm5", {"n_hidden": 16}), "gru": ("gru", {"n_hidden": 16, "emb_sz": 8}),
          "lstm": ("lstm", {"n_hidden": 16, "emb_sz": 8})}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOPLM_CACHE", str(tmp_path / "cache"))


def model_for(kind, vocab_sz):
    name, kw = MODELS[kind]
    return build_model(name, vocab_sz, **kw)


def test_temperature_divides_the_logits():
    logits = torch.tensor([[0.0, math.log(2)]])
    assert torch.allclose(next_token_probs(logits, SampleConfig()), torch.tensor([[1 / 3, 2 / 3]], dtype=torch.float64))
    # T = 0.5 doubles the logits: odds 1 : 4
    assert torch.allclose(next_token_probs(logits, SampleConfig(temperature=0.5)),
                          torch.tensor([[1 / 5, 4 / 5]], dtype=torch.float64))
    assert next_token_probs(logits, SampleConfig(temperature=0)).tolist() == [[0.0, 1.0]]


def test_top_k_and_top_p():
    logits = torch.log(torch.tensor([[0.1, 0.5, 0.15, 0.25]]))
    assert torch.allclose(next_token_probs(logits, SampleConfig(top_k=2)),
                          torch.tensor([[0, 0.5 / 0.75, 0, 0.25 / 0.75]], dtype=torch.float64))
    # top-p 0.6: 0.5 alone is short of 0.6, so 0.25 joins; 0.15 is not needed
    assert torch.allclose(next_token_probs(logits, SampleConfig(top_p=0.6)),
                          torch.tensor([[0, 0.5 / 0.75, 0, 0.25 / 0.75]], dtype=torch.float64))
    assert next_token_probs(logits, SampleConfig(top_p=0.01)).argmax().item() == 1


@pytest.mark.parametrize("bad, message", [
    ({"temperature": -1}, "--temperature must be 0 .greedy. or positive, got -1"),
    ({"top_k": 0}, "--top-k must be at least 1, got 0"),
    ({"top_p": 0}, r"--top-p must be in \(0, 1\], got 0"),
    ({"top_p": 1.5}, r"--top-p must be in \(0, 1\], got 1.5"),
])
def test_bad_sampling_settings(bad, message):
    with pytest.raises(LooplmError, match=message):
        SampleConfig(**bad).validate()


class CountingModel(nn.Module):
    """Wraps a model and records the length of every input it is given."""

    layout = "every"

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, []
        self.config = inner.config

    def forward(self, x, state=None):
        self.calls.append(x.shape[1])
        return self.inner(x, state)


@pytest.mark.parametrize("kind", MODELS)
def test_the_prompt_is_read_once_then_one_token_per_step(kind):
    model = CountingModel(model_for(kind, 10))
    out = sample_ids(model, torch.tensor([1, 2, 3, 4, 5]), 6, SampleConfig(seed=0))
    assert out.shape == (6,) and model.calls == [5, 1, 1, 1, 1, 1]


@pytest.mark.parametrize("kind", MODELS)
def test_stepping_matches_one_pass_over_the_text(kind):
    """Greedy generation picks, at every step, the argmax of a full pass over prompt + output."""
    model = model_for(kind, 10).eval()
    prompt = torch.tensor([3, 1, 4, 1, 5])
    out = sample_ids(model, prompt, 8, SampleConfig(temperature=0))
    logits, _ = model(torch.cat([prompt, out[:-1]])[None], None)
    assert logits[0, len(prompt) - 1:].argmax(-1).tolist() == out.tolist()


def test_seeds_repeat_and_unk_is_never_drawn():
    tok = fit_tokenizer("char", [TEXT])
    model = model_for("lstm", len(tok.vocab))
    with torch.no_grad():  # make <unk> the likeliest token: it must still never come out
        model.decoder.bias[tok.vocab.stoi[UNK]] = 50.0
    a = generate(model, tok, "to be", 40, seed=3)
    assert a == generate(model, tok, "to be", 40, seed=3) and len(a) >= 40
    assert a != generate(model, tok, "to be", 40, seed=4)
    assert UNK not in a
    assert model.training  # left as it was found


def test_bad_prompts_and_models():
    tok = fit_tokenizer("char", [TEXT])
    model = model_for("gru", len(tok.vocab))
    with pytest.raises(LooplmError, match="'Z'"):
        generate(model, tok, "Zebra", 5)
    with pytest.raises(LooplmError, match="no token"):
        generate(model, tok, "", 5)
    with pytest.raises(LooplmError, match="vocab of 3 tokens"):
        generate(model_for("gru", 3), tok, "to", 5)
    with pytest.raises(LooplmError, match="fixed samples"):
        generate(build_model("lm3", len(tok.vocab), n_hidden=8), tok, "to", 5)
    with pytest.raises(LooplmError, match="keeps no state"):
        sample_ids(StatelessModel(len(tok.vocab)), torch.tensor([1]), 3)


class StatelessModel(nn.Module):
    layout = "every"

    def __init__(self, v):
        super().__init__()
        self.emb = nn.Embedding(v, v)

    def forward(self, x, state=None):
        return self.emb(x), None


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny char-level lstm run on a text file (about a second of training)."""
    root = tmp_path_factory.mktemp("gen")
    text = root / "play.txt"
    text.write_text(TEXT, encoding="utf-8")
    out = root / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOOPLM_CACHE", str(root / "cache"))
        code = main(["train", "--data", str(text), "--tokenizer", "char", "--model", "lstm", "--epochs", "2",
                     "--bs", "4", "--sl", "32", "--lr", "1e-2", "--set", "n_hidden=32", "--set", "emb_sz=16",
                     "--set", "n_layers=1", "--quiet", "--out", str(out)])
    assert code == 0
    return out


def test_cli_prints_the_continuation(run_dir, capsys):
    assert main(["generate", "--run", str(run_dir), "--prompt", "to be", "--n", "30", "--seed", "1"]) == 0
    first = capsys.readouterr().out
    assert main(["generate", "--run", str(run_dir), "--prompt", "to be", "--n", "30", "--seed", "1",
                 "--show-prompt", "--top-k", "5", "--temperature", "0.5"]) == 0
    shown = capsys.readouterr().out
    assert not first.startswith("to be") and len(first) >= 31 and shown.startswith("to be")


def test_cli_bad_input_is_one_line(run_dir, tmp_path, capsys):
    assert main(["generate", "--run", str(run_dir), "--prompt", "ZZZ"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'Z'" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in ("config.json", "vocab.json", "model.safetensors"):
        (broken / f).write_bytes((run_dir / f).read_bytes())
    assert main(["generate", "--run", str(broken), "--prompt", "to"]) == 2
    assert "no tokenizer.json" in capsys.readouterr().err
    other = fit_tokenizer("char", ["xyz " * 20]).to_dict()
    (broken / "tokenizer.json").write_text(json.dumps(other), encoding="utf-8")
    assert main(["generate", "--run", str(broken), "--prompt", "to"]) == 2
    assert "differ" in capsys.readouterr().err
