"""The AI, batched matches, and the terminal game of ``looplm play borborzan``."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from looplm.cli.main import main
from looplm.data.sources import DataOptions
from looplm.errors import LooplmError
from looplm.games import VOCAB, encode, get_player
from looplm.games.play import (
    AI, PRIMER, ModelForecaster, PolicyForecaster, PolicyStrategy, best_reply, match, parse_move, play_terminal,
)
from looplm.games.rules import BIG_SHIELD, BUDDHA, CHICK, MOVES, SHIELD, SHOOT, ZAN, available
from looplm.data.vocab import Vocab
from looplm.models.registry import build_model
from looplm.runconfig import config_to_dict
from looplm.rundir import load_run, save_run
from looplm.training import TrainConfig, train


def _q(**probs) -> np.ndarray:
    q = np.zeros((1, 8))
    for move, p in probs.items():
        q[0, MOVES.index(move.replace("_", "-"))] = p
    return q


@pytest.mark.parametrize("q, energy, expected", [
    # a random opponent at energy 0 plays zan, shield or buddha: shield kills buddha and nothing kills shield
    (_q(zan=1 / 3, shield=1 / 3, buddha=1 / 3), 0, SHIELD),
    # it has 1 energy: zan loses to shoot (-1/6), buddha wins 1/6 and loses 2/6, shield wins 1/6
    (_q(zan=1 / 6, shield=1 / 6, shoot=1 / 6, reflect=1 / 6, buddha=1 / 6, steal=1 / 6), 0, SHIELD),
    # a sure zan: shoot kills it
    (_q(zan=1.0), 1, SHOOT),
    # a sure chick kills everything but big-shield and chick: both score 0, big-shield costs less
    (_q(chick=1.0), 3, BIG_SHIELD),
    # nothing to win or lose: the move that gains energy
    (_q(zan=1.0), 0, ZAN),
])
def test_best_reply_by_hand(q, energy, expected):
    assert best_reply(q, available(np.array([energy])))[0] == expected


def test_best_reply_never_picks_an_unaffordable_move():
    rng = np.random.default_rng(0)
    q = rng.dirichlet(np.ones(8), size=500)
    energy = rng.integers(0, 4, 500)
    assert available(energy)[np.arange(500), best_reply(q, available(energy))].all()


def test_parse_move():
    assert parse_move("  Big Shield ") == BIG_SHIELD and parse_move("bu") == BUDDHA and parse_move("chick") == CHICK
    with pytest.raises(LooplmError, match="shield or shoot"):
        parse_move("sh")
    with pytest.raises(LooplmError, match="not a move"):
        parse_move("banana")


def test_rates_sum_to_one_and_the_oracle_beats_random():
    random = get_player("random")
    oracle = match(AI(PolicyForecaster(random)), random, 2000, seed=0)
    baseline = match(PolicyStrategy(random), random, 2000, seed=0)
    for r in (oracle, baseline):
        assert sum(r.rates().values()) == pytest.approx(1.0) and r.n == 2000
    assert abs(baseline.rates()["wins"] - baseline.rates()["losses"]) < 0.05  # the game is symmetric
    assert oracle.rates()["wins"] > 0.9 > 0.6 > baseline.rates()["wins"]


def test_a_move_limit_makes_draws():
    r = match(PolicyStrategy(get_player("random")), get_player("random"), 500, seed=1, max_pairs=1)
    assert r.draws > 0 and r.wins + r.losses + r.draws == 500 and r.mean_pairs == 1.0


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "bz"
    cfg = TrainConfig(data="borborzan", model="lm6", epochs=2, lr=2e-2, bs=16, sl=16, seed=0,
                      data_options=DataOptions(games=1000, players="random,random", seed=1),
                      model_config={"n_hidden": 24})
    train(cfg, out=out, log=None, progress=False)
    return out


def test_the_forecaster_keeps_one_state_row_per_live_game(run_dir):
    """After games drop out, each live row's forecast is the model reading that game's document alone."""
    run = load_run(run_dir)
    fc = ModelForecaster(run.model, run.vocab.itos)
    games = [[(ZAN, ZAN), (SHIELD, ZAN), (SHIELD, SHIELD)], [(SHIELD, BUDDHA)], [(ZAN, SHIELD), (SHOOT, ZAN)]]
    fc.start(3)
    live = [0, 1, 2]
    for step in range(3):
        a = np.array([games[g][step][0] if step < len(games[g]) else ZAN for g in live])
        b = np.array([games[g][step][1] if step < len(games[g]) else ZAN for g in live])
        on = np.array([step + 1 < len(games[g]) for g in live])
        if not on.any():
            break
        fc.observe(a, b, on)
        live = [g for g, keep in zip(live, on) if keep]
        for row, g in enumerate(live):
            doc = PRIMER + "".join(f" {MOVES[x]} to {MOVES[y]} ," for x, y in games[g][: step + 1])
            with torch.no_grad():
                logits, _ = run.model(torch.from_numpy(encode(doc, run.vocab.itos))[None])
            p = torch.softmax(logits[0, -1].double(), -1)[[VOCAB.index(m) for m in MOVES]]
            np.testing.assert_allclose(fc.q[row], (p / p.sum()).numpy(), rtol=1e-5)


def test_the_ai_of_a_model_trained_a_little_beats_random(run_dir):
    run = load_run(run_dir)
    random = get_player("random")
    ai = match(AI(ModelForecaster(run.model, run.vocab.itos)), random, 1000, seed=0)
    baseline = match(PolicyStrategy(random), random, 1000, seed=0)
    assert sum(ai.rates().values()) == pytest.approx(1.0)
    assert ai.rates()["wins"] > baseline.rates()["wins"] + 0.2


def test_play_vs_random_cli(run_dir, capsys):
    assert main(["play", "borborzan", "--run", str(run_dir), "--vs", "random", "--games", "300", "--json"]) == 0
    ai, rnd = json.loads(capsys.readouterr().out)
    assert ai["player"] == "AI" and rnd["player"] == "random" and ai["games"] == rnd["games"] == 300
    for r in (ai, rnd):
        assert r["wins"] + r["losses"] + r["draws"] == pytest.approx(1.0)
    assert main(["play", "borborzan", "--run", str(run_dir), "--vs", "cautious", "--games", "50"]) == 0
    assert "cautious" in capsys.readouterr().out


def _scripted(lines):
    feed = iter(lines)
    asked, said = [], []

    def ask(prompt):
        asked.append(prompt)
        try:
            return next(feed)
        except StopIteration:
            raise EOFError from None

    return ask, said.append, asked, said


def test_terminal_game_rejects_bad_moves_and_ends_on_eof():
    ask, say, asked, said = _scripted(["banana", "shoot", "sh", "help", "shield"])
    # an oracle AI against "shield": shields back (nothing to win), so the game goes on to the end of input
    tally = play_terminal(AI(PolicyForecaster(get_player("random"))), ask, say)
    text = "\n".join(said)
    assert "'banana' is not a move" in text
    assert "you cannot afford shoot: it costs 1 energy and you have 0" in text
    assert "shield or shoot" in text and "kills:" in text
    assert "you: shield, AI: " in text and text.endswith("bye")
    assert asked.count("your move> ") == 6 and tally == {"wins": 0, "losses": 0, "draws": 0}


def test_terminal_game_to_the_end_and_again():
    # the oracle answers a zan at (1, 0) with shoot... we play buddha with no energy against it:
    # whatever the AI plays, the record shows the outcome and the score
    ask, say, asked, said = _scripted(["buddha", "buddha", "buddha", "n"])
    play_terminal(AI(PolicyForecaster(get_player("random"))), ask, say, max_pairs=3)
    text = "\n".join(said)
    assert ("the AI wins" in text or "a draw" in text) and "score: you" in text and text.endswith("bye")


def test_interactive_cli_through_stdin(run_dir, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("nonsense\nchick\nzan\nquit\n"))
    assert main(["play", "borborzan", "--run", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "'nonsense' is not a move" in out and "cannot afford chick" in out
    assert "energy: you 0, AI 0" in out and "you: zan, AI: " in out and out.endswith("bye\n")


@pytest.mark.parametrize("argv, message", [
    (["--vs", "random", "--games", "0"], "--games"),
    (["--vs", "random", "--games", "-5"], "--games"),
    (["--vs", "nobody"], "invalid choice"),
])
def test_bad_play_arguments(run_dir, capsys, argv, message):
    assert main(["play", "borborzan", "--run", str(run_dir), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_play_needs_a_borborzan_run(tmp_path, capsys):
    vocab = Vocab(("one", "two", "."))
    model = build_model("lm6", len(vocab), n_hidden=8)
    save_run(tmp_path, model, vocab, config_to_dict(TrainConfig(model="lm6", model_config={"n_hidden": 8}),
                                                    model.config), [])
    assert main(["play", "borborzan", "--run", str(tmp_path), "--vs", "random", "--games", "10"]) == 2
    assert "lacks the bor-bor-zan tokens" in capsys.readouterr().err
