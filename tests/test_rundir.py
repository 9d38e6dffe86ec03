import json

import pytest
import torch

from looplm.data.vocab import Vocab
from looplm.errors import LooplmError
from looplm.models import build_model
from looplm.rundir import load_run, save_run
from looplm.runconfig import config_to_dict
from looplm.training import TrainConfig


@pytest.fixture
def run_dir(tmp_path):
    vocab = Vocab.from_tokens("a b c d".split())
    model = build_model("lm7", len(vocab), n_hidden=8)
    config = config_to_dict(TrainConfig(model="lm7", model_config={"n_hidden": 8}), model.config)
    save_run(tmp_path, model, vocab, config, [{"epoch": 0, "accuracy": 0.5}])
    return tmp_path, model


def test_roundtrip_keeps_weights_and_tying(run_dir):
    path, model = run_dir
    run = load_run(path)
    for (k, v), (k2, v2) in zip(model.state_dict().items(), run.model.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    assert run.model.h_o.weight is run.model.i_h.weight


def test_missing_file(run_dir):
    path, _ = run_dir
    (path / "vocab.json").unlink()
    with pytest.raises(LooplmError, match="no vocab.json"):
        load_run(path)


def test_corrupt_weights(run_dir):
    path, _ = run_dir
    (path / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(LooplmError, match="corrupt"):
        load_run(path)


def test_vocab_of_another_run(run_dir):
    path, _ = run_dir
    Vocab.from_tokens("a b c d e".split()).save(path / "vocab.json")
    with pytest.raises(LooplmError, match="vocab of 4 tokens but vocab.json has 5"):
        load_run(path)


def test_config_that_is_not_json(run_dir):
    path, _ = run_dir
    (path / "config.json").write_text("{not json")
    with pytest.raises(LooplmError, match="config.json is damaged"):
        load_run(path)


def test_weights_of_another_shape(run_dir):
    path, _ = run_dir
    config = json.loads((path / "config.json").read_text())
    config["model"]["n_hidden"] = 16
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(LooplmError, match=r"does not fit model lm7 .* 16"):
        load_run(path)
