"""Every script in examples/ runs, and learns what its docstring says (some at reduced sizes)."""

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_delayed_regression_learns_only_when_k2_exceeds_the_delay():
    """The acceptance run, at its default sizes: d = 4, k1 = 4; the d-blind baseline is R^2 = 0.2."""
    r2 = load("delayed_regression").main([])
    assert r2[8] >= 0.99
    assert r2[4] < 0.2 + 0.08


@pytest.mark.slow
def test_online_stream_learns_with_flat_memory():
    out = load("online_stream").main(["--steps", "1000", "--k2", "16"])
    first, last = out["log"][0], out["log"][-1]
    assert last["mse"] < 0.6 * out["naive_mse"] < first["mse"]
    assert out["kept_inputs"] <= 1 + 16 + 50 and out["kept_graph"] <= 15
    assert last["rss_mb"] - out["log"][2]["rss_mb"] < 5


def test_dict_state_episodes_learn_the_running_mean():
    out = load("dict_state_episodes").main(["--episodes", "100"])
    assert out["mse"] < 0.25 * out["zero_mse"]


def test_lightning_module_trains_with_tbptt_stream():
    pytest.importorskip("lightning", reason="Lightning is an optional extra: pip install -e '.[lightning]'")
    out = load("lightning_tbptt").main(["--episodes", "100"])
    assert out["mse"] < 0.25 * out["zero_mse"]
