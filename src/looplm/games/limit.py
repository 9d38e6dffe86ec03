"""The optimum over infinitely many games: what ``optimal_loss`` of a long stream tends to.

A game is a Markov chain on the energies (e1, e2). Per game, let L be the summed
-log P of its moves (every other token is certain), K its number of pairs and C the
expected number of its moves the argmax guesses. A game writes 4K + 2 tokens, of which
the 2K "to"/"," and the final "end ." are certain and guessed right, so over many games::

    loss     -> E[L] / (4 E[K] + 2)
    accuracy -> (E[C] + 2 E[K] + 2) / (4 E[K] + 2)

E[L], E[K], E[C] from the start (0, 0) solve linear equations over the energy states,
solved by fixed-point iteration. Energies above ``max_energy`` are clamped: the chance of
reaching them is negligible for the registered players (a test checks that raising the
cap does not move the figures).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from looplm.errors import LooplmError
from looplm.games.players import Player, resolve_players
from looplm.games.rules import DEADLY, N_MOVES, play


def expected_optimum(
    players: str | Sequence[str | Player] = ("random", "random"),
    max_energy: int = 40,
    tol: float = 1e-13,
    max_iter: int = 100_000,
) -> dict[str, float]:
    """{"optimal_loss", "optimal_accuracy", "pairs_per_game"} of an endless stream of games."""
    p1, p2 = resolve_players(players)
    e1, e2 = np.meshgrid(np.arange(max_energy + 1), np.arange(max_energy + 1), indexing="ij")
    pol1, pol2 = p1.policy(e1, e2), p2.policy(e2, e1)  # (S, S, 8)
    joint = pol1[..., :, None] * pol2[..., None, :]  # (S, S, 8, 8): P(a, b | e1, e2)
    a, b = np.meshgrid(np.arange(N_MOVES), np.arange(N_MOVES), indexing="ij")
    n1, n2 = play(e1[..., None, None], e2[..., None, None], a, b)  # (S, S, 8, 8)
    n1, n2 = np.minimum(n1, max_energy), np.minimum(n2, max_energy)

    def log_p(pol):
        return np.log(np.where(pol > 0, pol, 1.0))

    surprise = -(joint * (log_p(pol1)[..., :, None] + log_p(pol2)[..., None, :])).sum((-1, -2))
    guessed = pol1.max(-1) + pol2.max(-1)
    cont = joint * ~DEADLY  # the pairs after which the game goes on
    L, K, C = (np.zeros(e1.shape) for _ in range(3))
    for _ in range(max_iter):
        new = [
            now + (cont * later[n1, n2]).sum((-1, -2))
            for now, later in ((surprise, L), (1.0, K), (guessed, C))
        ]
        delta = max(np.abs(n - o).max() for n, o in zip(new, (L, K, C)))
        L, K, C = new
        if delta < tol:
            break
    else:
        raise LooplmError(f"players {p1.name},{p2.name}: expected game length does not converge")
    tokens = 4 * K[0, 0] + 2
    return {
        "optimal_loss": float(L[0, 0] / tokens),
        "optimal_accuracy": float((C[0, 0] + 2 * K[0, 0] + 2) / tokens),
        "pairs_per_game": float(K[0, 0]),
    }
