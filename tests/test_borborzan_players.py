"""Players: policies are distributions over affordable moves; sampling follows them."""

from __future__ import annotations

import numpy as np
import pytest

from looplm.errors import LooplmError
from looplm.games import PLAYERS, get_player, resolve_players
from looplm.games.players import sample
from looplm.games.rules import BUDDHA, COST, SHIELD, ZAN

GRID = np.meshgrid(np.arange(7), np.arange(7), indexing="ij")  # (my, opp) energies 0..6


@pytest.mark.parametrize("name", sorted(PLAYERS))
def test_policy_is_a_distribution_over_affordable_moves(name):
    my, opp = GRID
    p = get_player(name).policy(my, opp)
    assert p.shape == (7, 7, 8)
    np.testing.assert_allclose(p.sum(-1), 1.0)
    affordable = my[..., None] >= COST
    assert np.all(p[~affordable] == 0) and np.all(p[affordable] > 0)
    # one state at a time gives the same rows as the whole grid
    assert np.array_equal(get_player(name).policy(3, 1), p[3, 1])


def test_random_is_uniform_as_the_seeds_random_choice():
    requires = [0, 0, 1, 1, 0, 1, 3, 2]
    for energy in range(6):
        choices = [i for i in range(8) if requires[i] <= energy]
        expected = np.zeros(8)
        expected[choices] = 1 / len(choices)
        for opp in range(4):
            np.testing.assert_allclose(get_player("random").policy(energy, opp), expected)


def test_cautious_guards_against_a_loaded_opponent_and_charges_otherwise():
    cautious = get_player("cautious")
    threatened, safe = cautious.policy(0, 1), cautious.policy(0, 0)
    assert threatened.argmax() == SHIELD and safe.argmax() == ZAN
    assert threatened[SHIELD] == pytest.approx(6 / 8) and safe[ZAN] == pytest.approx(6 / 8)
    assert safe[BUDDHA] == threatened[BUDDHA] == pytest.approx(1 / 8)
    # the policy depends on the opponent's energy, not only on its own
    assert not np.allclose(cautious.policy(2, 0), cautious.policy(2, 2))


@pytest.mark.parametrize("name", sorted(PLAYERS))
def test_sampling_follows_the_policy_and_is_seeded(name):
    player = get_player(name)
    n = 40_000
    my = np.full(n, 2)
    opp = np.full(n, 1)
    moves = sample(player, my, opp, np.random.default_rng(0))
    assert np.array_equal(moves, sample(player, my, opp, np.random.default_rng(0)))
    freq = np.bincount(moves, minlength=8) / n
    p = player.policy(2, 1)
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / n) + 1e-12)
    assert freq[6] == 0  # chick needs 3


def test_registry_rejects_unknown_names_and_wrong_counts():
    with pytest.raises(LooplmError, match="unknown player 'randon'.*cautious, random"):
        get_player("randon")
    with pytest.raises(LooplmError, match="exactly 2 players"):
        resolve_players("random")
    p1, p2 = resolve_players("cautious, random")
    assert (p1.name, p2.name) == ("cautious", "random")
    assert resolve_players([p1, "cautious"])[0] is p1
