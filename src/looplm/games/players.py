"""Players whose move is a known distribution over the 8 moves given both energies.

A player is its ``policy``::

    policy(my_energy, opp_energy) -> p      # ints (...) -> float (..., 8), rows sum to 1

and ``sample`` draws from it with a numpy Generator, for many games at once. Both players of
a pair draw independently (the moves are simultaneous), so a policy never sees the other
move of its pair. Because the policy is all there is, the true next-token distribution of a
document is computable exactly (``looplm.games.optimum``).

Players are looked up by name in ``PLAYERS``. A player that is not a known distribution (a
person, or an AI that reads the game's history) cannot write documents with an exact optimum;
it only needs a move per live ``Game`` and can live beside these in the play loop.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from looplm.errors import LooplmError
from looplm.games.rules import SHIELD, ZAN, available


class Player(Protocol):
    name: str

    def policy(self, my_energy, opp_energy) -> np.ndarray:
        """Move probabilities, (...) energies -> (..., 8); zero on unaffordable moves."""
        ...


def sample(player: Player, my_energy, opp_energy, rng: np.random.Generator) -> np.ndarray:
    """One move per game from ``player``'s policy: energies (n,) -> move ids (n,) int64.

    Inverse-CDF with one uniform per game; a move of probability 0 is never drawn because
    its CDF step is empty (and the CDF is renormalised so its last value is exactly 1).
    """
    cdf = np.cumsum(player.policy(my_energy, opp_energy), axis=-1)  # (n, 8)
    cdf /= cdf[..., -1:]
    u = rng.random(cdf.shape[:-1])[..., None]
    return np.argmax(u < cdf, axis=-1).astype(np.int64)


class RandomPlayer:
    """Uniform over the affordable moves: the seed's ``random.choice(actions_available)``."""

    name = "random"

    def policy(self, my_energy, opp_energy) -> np.ndarray:
        ok = available(my_energy).astype(np.float64)
        return ok / ok.sum(axis=-1, keepdims=True)


class CautiousPlayer:
    """Guards when the opponent can shoot, charges up when it cannot.

    Every affordable move keeps weight 1 (so every game can still end, and every move is
    seen in the data); on top of that, shield gets weight ``guard`` while the opponent has
    energy to shoot (shield survives shoot; zan, buddha, steal and big-shield do not), and
    zan gets weight ``charge`` while the opponent cannot shoot (zan is then safe).
    """

    name = "cautious"

    def __init__(self, guard: float = 6.0, charge: float = 6.0):
        self.guard, self.charge = guard, charge

    def policy(self, my_energy, opp_energy) -> np.ndarray:
        w = available(my_energy).astype(np.float64)
        w = w * np.ones(np.shape(opp_energy) + (1,))  # broadcast over both energies
        opp_can_shoot = np.asarray(opp_energy) >= 1
        w[..., SHIELD] = np.where(opp_can_shoot, self.guard, w[..., SHIELD])
        w[..., ZAN] = np.where(opp_can_shoot, w[..., ZAN], self.charge)
        return w / w.sum(axis=-1, keepdims=True)


PLAYERS: dict[str, type] = {p.name: p for p in (RandomPlayer, CautiousPlayer)}


def get_player(name: str) -> Player:
    """A player by its registry name; unknown names are a LooplmError listing the known ones."""
    try:
        return PLAYERS[name]()
    except KeyError:
        raise LooplmError(
            f"unknown player {name!r}: choose from {', '.join(sorted(PLAYERS))}"
        ) from None


def resolve_players(players: str | Sequence[str | Player]) -> tuple[Player, Player]:
    """Two players from "random,cautious", ("random", "cautious") or Player objects."""
    if isinstance(players, str):
        players = [p.strip() for p in players.split(",")]
    if len(players) != 2:
        raise LooplmError(f"bor-bor-zan needs exactly 2 players, got {len(players)}: {players!r}")
    p1, p2 = (get_player(p) if isinstance(p, str) else p for p in players)
    return p1, p2

