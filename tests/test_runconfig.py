"""config.json: each part holds what it uses, one strict reader, format 2 and 0.1's runs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from looplm.data.sources import DataOptions
from looplm.errors import LooplmError
from looplm.models.registry import model_spec
from looplm.runconfig import (
    ChunksSpec, TBPTTSpec, VariableSpec, WindowsSpec, config_from_dict, config_to_dict, load_config,
)
from looplm.training import TrainConfig, train

OLD = Path(__file__).parent / "data" / "run-0.1"


def _dict(cfg: TrainConfig) -> dict:
    spec = model_spec(cfg.model)
    return config_to_dict(cfg, spec.make_config(30, **cfg.model_config))


def test_an_lm4_run_records_only_what_lm4_human_numbers_and_chunks_use(tmp_path):
    cfg = TrainConfig(model="lm4", epochs=1, bs=16, sl=3, model_config={"n_hidden": 8}, device="cpu")
    train(cfg, out=tmp_path, log=None, progress=False)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["format"] == 2
    assert config["model"] == {"name": "lm4", "vocab_sz": 30, "n_hidden": 8, "fast": True}
    assert config["data"] == {"name": "human-numbers"}
    assert config["training"]["strategy"] == {"kind": "chunks"}
    assert set(config["training"]) == {"epochs", "lr", "wd", "bs", "sl", "seed", "alpha", "beta", "clip", "moms",
                                       "device", "group", "strategy", "precision", "time_budget", "budget"}


def test_each_source_keeps_its_own_options():
    options = DataOptions(games=50, players="random,cautious", seed=4, tokenizer="bpe:300", valid_pct=0.2)
    bor = _dict(TrainConfig(model="lm6", data="borborzan", data_options=options))["data"]
    assert bor == {"name": "borborzan", "games": 50, "players": "random,cautious", "seed": 4}
    text = _dict(TrainConfig(model="lm6", data="/data/notes.txt", data_options=options))["data"]
    assert text == {"name": "/data/notes.txt", "tokenizer": "bpe:300", "valid": None, "valid_pct": 0.2,
                    "shuffle_docs": False, "seed": 4, "split_at": "word"}


SPECS = st.one_of(
    st.just(ChunksSpec()), st.just(VariableSpec()),
    st.builds(TBPTTSpec, st.none() | st.integers(1, 64), st.none() | st.integers(1, 64),
              st.sampled_from(["stored", "recompute"])),
    st.builds(WindowsSpec, overlap=st.integers(1, 7)), st.builds(WindowsSpec, burn_in=st.integers(1, 7)),
)


@settings(max_examples=40, deadline=None)
@given(spec=SPECS, model=st.sampled_from(["lm1", "lm4", "lm7", "lstm", "awd-lstm"]),
       data=st.sampled_from(["human-numbers", "borborzan", "/data/notes.txt"]),
       lr=st.floats(1e-5, 1.0), clip=st.none() | st.floats(0.1, 5.0), seed=st.integers(0, 10**6))
def test_the_settings_come_back_as_they_were_written(spec, model, data, lr, clip, seed):
    sl = 3 if model == "lm1" else 8
    cfg = TrainConfig(model=model, data=data, lr=lr, clip=clip, seed=seed, sl=sl, strategy=spec,
                      data_options=DataOptions(seed=seed))
    try:
        cfg.validate()
    except LooplmError:
        assume(False)  # reading config.json refuses settings that cannot train (e.g. overlap >= sl)
    written = json.loads(json.dumps(_dict(cfg)))
    back = config_from_dict(written).train
    assert back.strategy == spec and (back.model, back.data, back.lr, back.clip, back.seed) == (model, data, lr,
                                                                                               clip, seed)
    assert config_to_dict(back, config_from_dict(written).model_config) == written


BAD = [
    (lambda c: c["training"].update(k1=4), "training has an unknown key 'k1'"),
    (lambda c: c["training"].update(bs="64"), r"training.bs must be a whole number, got '64'"),
    (lambda c: c["training"].update(moms=[0.9, 0.8]), r"training.moms must be a list of 3 values, got 2"),
    (lambda c: c["training"].update(strategy={"kind": "magic"}), r"training.strategy must be an object"),
    (lambda c: c["training"].update(strategy={"kind": "tbptt", "overlap": 2}), "unknown key 'overlap'"),
    (lambda c: c["model"].update(n_layers=2), "model has an unknown key 'n_layers'"),
    (lambda c: c["model"].update(fast="yes"), "model.fast must be true or false"),
    (lambda c: c["data"].update(games=10), "data has a key 'games' that human-numbers does not use"),
    (lambda c: c.update(extra=1), "unknown key 'extra'"),
    (lambda c: c.update(format=3), "format 3"),
    (lambda c: c.update(training=[1, 2]), "lacks its 'training' section"),
    (lambda c: c["model"].pop("name"), 'model lacks its "name"'),
    (lambda c: c["training"].update(lr_max=0.1), "training has an unknown key 'lr_max'"),
    (lambda c: c["training"].update(clip="none"), "training.clip must be a number, got 'none'"),
]


@pytest.mark.parametrize("damage, message", BAD)
def test_a_config_that_breaks_the_format_is_one_line_naming_the_key(damage, message):
    config = copy.deepcopy(_dict(TrainConfig(model="lm4", sl=3)))
    damage(config)
    with pytest.raises(LooplmError, match=message) as err:
        config_from_dict(config)
    assert "\n" not in str(err.value)


def test_a_setting_missing_from_the_training_section_takes_its_default():
    """A newer looplm may add training settings: files written before them still read."""
    config = _dict(TrainConfig(model="lm4", sl=3, lr=0.5))
    del config["training"]["clip"], config["training"]["strategy"]
    cfg = config_from_dict(config).train
    assert (cfg.lr, cfg.clip, cfg.strategy) == (0.5, None, ChunksSpec())


def test_a_0_1_run_keeps_only_what_its_model_and_source_use():
    old = json.loads((OLD / "lm4-done" / "config.json").read_text())
    assert "n_layers" in old["model_config"] and "games" in old["train"]["data_options"]  # 0.1 kept them
    run = load_config(OLD / "lm4-done")
    assert run.model_config == model_spec("lm4").config_cls(vocab_sz=30, n_hidden=8, fast=True)
    new = config_to_dict(run.train, run.model_config)
    assert new["model"] == {"name": "lm4", "vocab_sz": 30, "n_hidden": 8, "fast": True}
    assert new["data"] == {"name": "human-numbers"} and new["training"]["strategy"] == {"kind": "chunks"}
    assert (run.train.bs, run.train.sl, run.train.epochs) == (16, 3, 1)
