"""`looplm train` with the training strategies of the TBPTT issue and the model-size flags."""

import csv

import pytest

from looplm.cli.main import main
from looplm.models.awd_lstm import AWD_LSTM_PRESETS
from looplm.rundir import load_run
from looplm.strategies import TBPTT, Chunks, VariableChunks, Windows
from looplm.runconfig import TBPTTSpec, WindowsSpec, load_config
from looplm.training import TrainConfig, strategy_for

SMALL = ["--model", "lm6", "--set", "n_hidden=32", "--set", "n_layers=1", "--bs", "32", "--sl", "16",
         "--lr", "1e-2", "--seed", "0", "--quiet"]


def final_accuracy(run_dir) -> float:
    return float(list(csv.DictReader((run_dir / "metrics.csv").open()))[-1]["accuracy"])


@pytest.mark.parametrize("flags, kind", [
    ([], Chunks),
    (["--k1", "4", "--k2", "16"], TBPTT),
    (["--k1", "8", "--k2", "8", "--tbptt-mode", "recompute"], TBPTT),
    (["--overlap", "8"], Windows),
    (["--burn-in", "4"], Windows),
    (["--variable-sl"], VariableChunks),
])
def test_every_strategy_trains_human_numbers_above_the_baseline(tmp_path, flags, kind):
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--epochs", "2", *flags, "--out", str(out)]) == 0
    # 0.15 is the most-common-token baseline; two small epochs of any strategy must beat it well
    assert final_accuracy(out) > 0.3
    # the run directory records the strategy, so a resumed run trains the same way
    saved = load_config(out).train
    assert isinstance(strategy_for(saved), kind)
    for flag, key in (("--k1", "k1"), ("--k2", "k2"), ("--overlap", "overlap"), ("--burn-in", "burn_in")):
        if flag in flags:
            assert getattr(saved.strategy, key) == int(flags[flags.index(flag) + 1])


def test_the_strategy_follows_the_settings():
    assert strategy_for(TrainConfig(sl=16, strategy=TBPTTSpec(k1=4))) == TBPTT(4, 16, "stored")
    assert strategy_for(TrainConfig(sl=16, strategy=TBPTTSpec(k2=32, mode="recompute"))) == TBPTT(16, 32, "recompute")
    assert strategy_for(TrainConfig(sl=16, strategy=WindowsSpec(overlap=4))) == Windows(16, overlap=4)
    assert strategy_for(TrainConfig(sl=16, strategy=WindowsSpec(burn_in=6))) == Windows(16, burn=6)
    assert isinstance(strategy_for(TrainConfig(sl=16)), Chunks)


BAD = [
    (["--overlap", "16"], "--overlap 16 must be smaller"),
    (["--burn-in", "16"], "leaves nothing to train"),
    (["--overlap", "-1"], "--overlap: must be a whole number of at least 0"),
    (["--k1", "4", "--overlap", "2"], "choose one"),
    (["--burn-in", "2", "--variable-sl"], "choose one"),
    (["--k1", "0"], "--k1"),
    (["--model", "lm3", "--k1", "4"], "prediction at every step"),
    (["--model", "awd-lstm", "--preset", "huge"], "preset"),
    (["--model", "lm6", "--preset", "paper"], "preset"),
    (["--model", "awd-lstm", "--set", "output_p=1.5"], "output_p"),
]


@pytest.mark.parametrize("flags, message", BAD)
def test_impossible_strategy_settings_are_one_line_and_exit_2(tmp_path, capsys, flags, message):
    argv = ["train", "--model", "lm6", "--epochs", "1", "--out", str(tmp_path / "r")]
    code = main(argv + flags)  # a later --model wins over the default one
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_awd_lstm_sizes_come_from_the_preset_then_the_flags(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--model", "awd-lstm", "--preset", "paper", "--emb-sz", "16", "--n-hidden", "24",
                 "--n-layers", "2", "--epochs", "1", "--bs", "16", "--sl", "16", "--quiet", "--out", str(out)]) == 0
    config = load_run(out).model.config
    assert (config.emb_sz, config.n_hid, config.n_layers) == (16, 24, 2)
    # the dropouts are the paper's, not the defaults
    assert config.output_p == AWD_LSTM_PRESETS["paper"]["output_p"]
    assert config.input_p == AWD_LSTM_PRESETS["paper"]["input_p"]
