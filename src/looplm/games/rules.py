"""Bor-bor-zan rules, exactly as the seed notebook's ``Game.act`` / ``Game.determine`` play them.

Two players move at the same time, one of eight moves each. Moves are numbered 0..7 here
(the seed numbers them 1..8 in the same order)::

    id  move        energy   kills (the seed's determine(a, b))
    0   zan          +1      -
    1   shield        0      buddha
    2   shoot        -1      zan, buddha, steal, big-shield
    3   reflect      -1      shoot
    4   buddha        0      reflect
    5   steal        -1      -
    6   chick        -3      zan, shield, shoot, reflect, buddha, steal
    7   big-shield   -2      buddha

A move is available when the player's energy covers its cost (energy >= -delta).
Both players start a game with energy 0. One move pair, in the seed's order:

1. the winner: player 1 if ``a`` kills ``b``, else player 2 if ``b`` kills ``a``; the game is
   over after the first pair with a kill. No pair kills both ways (a test checks all 64), so
   the seed's player-1-first order never decides a game.
2. both energies move by their own move's delta (even in the pair that ends the game).
3. buddha empties the *opponent's* energy after step 2 (so zan's +1 against buddha is lost),
   whether or not the buddha player survives.
4. two steals cancel: both players still paid 1 in step 2, nothing moves. Quirk: the seed's
   ``Game.record`` skips this pair (``act`` returns early), but the documents are written from
   ``DataGen.text_record``, which keeps it, and so do we.
5. otherwise a steal takes all of the opponent's energy (after steps 2-3), unless the
   opponent played buddha: then the stealer has paid 1 and been emptied by step 3.

``play`` applies one pair to arrays of games at once; ``Game`` is one live game (for play).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MOVES: tuple[str, ...] = (
    "zan", "shield", "shoot", "reflect", "buddha", "steal", "chick", "big-shield",
)
N_MOVES = len(MOVES)
ZAN, SHIELD, SHOOT, REFLECT, BUDDHA, STEAL, CHICK, BIG_SHIELD = range(N_MOVES)

# Energy change of each move; a move needs energy >= -DELTA (the seed's `requires`).
DELTA = np.array([+1, 0, -1, -1, 0, -1, -3, -2], dtype=np.int64)
COST = np.maximum(-DELTA, 0)

_VICTIMS = {
    SHIELD: (BUDDHA,),
    SHOOT: (ZAN, BUDDHA, STEAL, BIG_SHIELD),
    REFLECT: (SHOOT,),
    BUDDHA: (REFLECT,),
    CHICK: (ZAN, SHIELD, SHOOT, REFLECT, BUDDHA, STEAL),
    BIG_SHIELD: (BUDDHA,),
}
# KILLS[a, b]: move a kills move b (the seed's determine(a, b)), shape (8, 8).
KILLS = np.zeros((N_MOVES, N_MOVES), dtype=bool)
for _killer, _victims in _VICTIMS.items():
    KILLS[_killer, list(_victims)] = True
# DEADLY[a, b]: the pair (a, b) ends the game.
DEADLY = KILLS | KILLS.T


def available(energy) -> np.ndarray:
    """Moves a player with ``energy`` can afford: int array (...) -> bool (..., 8)."""
    return np.asarray(energy)[..., None] >= COST


def winner(a, b) -> np.ndarray:
    """Who a pair kills: 0 nobody, 1 player 1 wins, 2 player 2 wins; shape of ``a``."""
    a, b = np.asarray(a), np.asarray(b)
    return np.where(KILLS[a, b], 1, np.where(KILLS[b, a], 2, 0))


def play(e1, e2, a, b) -> tuple[np.ndarray, np.ndarray]:
    """Energies after the pair (a, b) from energies (e1, e2); all arrays of one shape.

    Does not check that the moves are affordable (neither does the seed).
    """
    e1, e2, a, b = (np.asarray(x) for x in (e1, e2, a, b))
    n1 = np.where(b == BUDDHA, 0, e1 + DELTA[a])
    n2 = np.where(a == BUDDHA, 0, e2 + DELTA[b])
    steal1 = (a == STEAL) & (b != STEAL) & (b != BUDDHA)
    steal2 = (b == STEAL) & (a != STEAL) & (a != BUDDHA)
    total = n1 + n2
    n1 = np.where(steal1, total, np.where(steal2, 0, n1))
    n2 = np.where(steal2, total, np.where(steal1, 0, n2))
    return n1, n2


@dataclass
class Game:
    """One live game: energies, the pairs played so far, and the winner (0 while on)."""

    e1: int = 0
    e2: int = 0
    winner: int = 0
    pairs: list[tuple[int, int]] = field(default_factory=list)

    @property
    def over(self) -> bool:
        return self.winner != 0

    def energy(self, seat: int) -> tuple[int, int]:
        """(own, opponent's) energy of player ``seat`` (1 or 2)."""
        return (self.e1, self.e2) if seat == 1 else (self.e2, self.e1)

    def act(self, a: int, b: int) -> None:
        """Play the pair (player 1's move ``a``, player 2's move ``b``)."""
        if self.over:
            raise ValueError("the game is over")
        self.winner = int(winner(a, b))
        e1, e2 = play(self.e1, self.e2, a, b)
        self.e1, self.e2 = int(e1), int(e2)
        self.pairs.append((a, b))
