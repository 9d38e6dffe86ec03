"""Playing bor-bor-zan against a trained model: the AI, batched matches, and a terminal game.

The AI sits in seat 2 and its opponent in seat 1, so the game so far, written as the training
documents are, ends right where the model's next token is the opponent's next move::

    primer        game so far                  the model's next-token distribution here,
    ----------    ------------------------     over the 8 moves, is its forecast q of the
    ... end .     zan to shield , zan to zan , ?   opponent's move (renormalised)

Train with the kind of player the AI will meet in seat 1 (``--players random,random`` or
``random,cautious`` to face a random player). The AI picks, among the moves it can afford,
the one that maximises P(win) - P(lose) of this pair under q, ties broken toward the lower
P(lose), then toward the move that leaves it more energy (see :func:`best_reply`).

A seat-2 strategy serves many games at once::

    start(n)                      n new games
    choose(e_own, e_opp, rng)     (n_live,) energies -> (n_live,) moves, before seeing the opponent's
    observe(a, b, on)             the pair just played in every live game; ``on`` (n_live,) bool:
                                  the games still going (the others are dropped from then on)

so :func:`match` advances all games one pair at a time with one model call per pair for all
live games, and the same AI plays one game in the terminal (:func:`play_terminal`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from looplm.errors import LooplmError
from looplm.games.document import COMMA, TO, VOCAB
from looplm.games.players import Player, sample
from looplm.games.rules import COST, DELTA, KILLS, MOVES, N_MOVES, available, play, winner
from looplm.state import map_state

MAX_PAIRS = 100  # a game with no kill after this many pairs is a draw
PRIMER = "shield to buddha , end ."  # a whole short game, so the model reads a game start
TIE = 1e-3  # scores closer than this are a tie: a model's probabilities are not finer than that


def best_reply(q: np.ndarray, affordable: np.ndarray) -> np.ndarray:
    """The AI's move in each game: q (n, 8) forecast of the opponent's move, affordable (n, 8).

    score(b) = P(b kills a) - P(a kills b) over a ~ q; among the affordable moves within
    ``TIE`` of the best score, the lowest P(lose) (within ``TIE``), then the largest energy
    change (zan before shield), then the lowest id.
    """
    win = q @ KILLS.T.astype(np.float64)  # win[:, b] = sum_a q[:, a] KILLS[b, a]
    lose = q @ KILLS.astype(np.float64)   # lose[:, b] = sum_a q[:, a] KILLS[a, b]
    score = np.where(affordable, win - lose, -np.inf)
    pick = score >= score.max(1, keepdims=True) - TIE
    risk = np.where(pick, lose, np.inf)
    pick &= risk <= risk.min(1, keepdims=True) + TIE
    return np.argmax(np.where(pick, DELTA, np.iinfo(np.int64).min), axis=1)


class Forecaster(Protocol):
    """What the AI believes the opponent will play: (n_live, 8) distributions."""

    def start(self, n: int) -> None: ...
    def forecast(self, e_opp: np.ndarray, e_own: np.ndarray) -> np.ndarray: ...
    def observe(self, a: np.ndarray, b: np.ndarray, on: np.ndarray) -> None: ...


class ModelForecaster:
    """A trained language model reading every game's document; one row of its state per game."""

    def __init__(self, model: nn.Module, vocab: Sequence[str]):
        if getattr(model, "layout", "every") != "every":
            raise LooplmError(f"{type(model).__name__} does not predict every next token: play needs lm4-lm7")
        missing = [w for w in VOCAB if w not in vocab]
        if missing:
            raise LooplmError(f"the run's vocab lacks the bor-bor-zan tokens {missing}: train it on --data borborzan")
        self.model = model.eval()
        self.device = next(model.parameters()).device
        stoi = {w: i for i, w in enumerate(vocab)}
        self.move_ids = torch.tensor([stoi[m] for m in MOVES], device=self.device)
        self.to_id, self.comma_id = stoi[TO], stoi[COMMA]
        self.primer = torch.tensor([stoi[w] for w in PRIMER.split()], device=self.device)
        self.state = None
        self.q = np.zeros((0, N_MOVES))

    @torch.no_grad()
    def _read(self, x: torch.Tensor) -> None:
        """Feed x (n_live, t) and keep the forecast after its last token."""
        logits, self.state = self.model(x, self.state)
        moves = F.softmax(logits[:, -1].double(), -1)[:, self.move_ids]  # (n_live, 8)
        self.q = (moves / moves.sum(1, keepdim=True)).cpu().numpy()

    def start(self, n: int) -> None:
        self.state = None
        self._read(self.primer.expand(n, -1))

    def forecast(self, e_opp: np.ndarray, e_own: np.ndarray) -> np.ndarray:
        return self.q

    def observe(self, a: np.ndarray, b: np.ndarray, on: np.ndarray) -> None:
        keep = torch.from_numpy(np.flatnonzero(on)).to(self.device)
        self.state = map_state(self.state, lambda t: t[:, keep])
        a, b = (torch.from_numpy(np.asarray(m)[on]).to(self.device) for m in (a, b))
        to, comma = torch.full_like(a, self.to_id), torch.full_like(a, self.comma_id)
        self._read(torch.stack([self.move_ids[a], to, self.move_ids[b], comma], 1))  # (n_on, 4): "a to b ,"


class PolicyForecaster:
    """An oracle: the opponent's true policy at the current energies (for tests and baselines)."""

    def __init__(self, player: Player):
        self.player = player

    def start(self, n: int) -> None:
        pass

    def forecast(self, e_opp: np.ndarray, e_own: np.ndarray) -> np.ndarray:
        return self.player.policy(e_opp, e_own)

    def observe(self, a, b, on) -> None:
        pass


class AI:
    """The seat-2 strategy that plays :func:`best_reply` to a forecaster's forecast."""

    def __init__(self, forecaster: Forecaster, name: str = "AI"):
        self.forecaster, self.name = forecaster, name

    def start(self, n: int) -> None:
        self.forecaster.start(n)

    def choose(self, e_own: np.ndarray, e_opp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return best_reply(self.forecaster.forecast(e_opp, e_own), available(e_own))

    def observe(self, a: np.ndarray, b: np.ndarray, on: np.ndarray) -> None:
        self.forecaster.observe(a, b, on)


class PolicyStrategy:
    """A known player (e.g. random) in seat 2."""

    def __init__(self, player: Player):
        self.player, self.name = player, player.name

    def start(self, n: int) -> None:
        pass

    def choose(self, e_own, e_opp, rng) -> np.ndarray:
        return sample(self.player, e_own, e_opp, rng)

    def observe(self, a, b, on) -> None:
        pass


@dataclass(frozen=True)
class MatchResult:
    """Outcomes of ``n`` games from seat 2's side: wins, losses, draws (no kill in ``max_pairs``)."""

    name: str
    opponent: str
    n: int
    wins: int
    losses: int
    draws: int
    max_pairs: int
    mean_pairs: float

    def rates(self) -> dict[str, float]:
        return {k: getattr(self, k) / self.n for k in ("wins", "losses", "draws")}


def match(strategy, opponent: Player, n_games: int, seed: int = 0, max_pairs: int = MAX_PAIRS) -> MatchResult:
    """Play ``n_games`` of ``opponent`` (seat 1) against ``strategy`` (seat 2), all at once."""
    if n_games < 1:
        raise LooplmError(f"the number of games must be at least 1, got {n_games}")
    if max_pairs < 1:
        raise LooplmError(f"the move limit must be at least 1 pair, got {max_pairs}")
    rng = np.random.default_rng(seed)
    live = np.arange(n_games)
    e1 = np.zeros(n_games, np.int64)
    e2 = np.zeros(n_games, np.int64)
    result = np.zeros(n_games, np.int64)  # winner(): 0 nobody (a draw at the end), 1 seat 1, 2 seat 2
    pairs = np.zeros(n_games, np.int64)
    strategy.start(n_games)
    for step in range(max_pairs):
        a = sample(opponent, e1, e2, rng)
        b = strategy.choose(e2, e1, rng)
        w = winner(a, b)
        result[live], pairs[live] = w, step + 1
        on = w == 0
        e1, e2 = play(e1[on], e2[on], a[on], b[on])
        live = live[on]
        if live.size == 0 or step == max_pairs - 1:
            break
        strategy.observe(a, b, on)
    counts = np.bincount(result, minlength=3)
    return MatchResult(strategy.name, opponent.name, n_games, int(counts[2]), int(counts[1]), int(counts[0]),
                       max_pairs, float(pairs.mean()))


# -- one game in the terminal ----------------------------------------------------------------

def parse_move(text: str) -> int:
    """A move id from a name or an unambiguous prefix ("big shield", "bu"); LooplmError if none."""
    word = "-".join(text.strip().lower().replace("_", " ").split())
    if word in MOVES:
        return MOVES.index(word)
    found = [i for i, m in enumerate(MOVES) if word and m.startswith(word)]
    if len(found) == 1:
        return found[0]
    if found:
        raise LooplmError(f"{text.strip()!r} could be {' or '.join(MOVES[i] for i in found)}: type more of it")
    raise LooplmError(f"{text.strip()!r} is not a move: the moves are {', '.join(MOVES)}")


def _cost(move: int) -> str:
    return f"+{DELTA[move]}" if DELTA[move] > 0 else (f"{DELTA[move]}" if DELTA[move] else "0")


RULES = "\n".join(
    [f"  {m:<11} energy {_cost(i):>2}   kills: {', '.join(MOVES[v] for v in np.flatnonzero(KILLS[i])) or '-'}"
     for i, m in enumerate(MOVES)]
    + ["  Moves are simultaneous; a move needs the energy it costs. The first pair with a kill ends the game.",
       "  buddha empties the opponent's energy; steal takes it (unless the opponent plays buddha)."]
)


def _ask_move(energy: int, ask: Callable[[str], str], say: Callable[[str], None]) -> int | None:
    """The person's move, asked until it is a move they can afford; None to stop."""
    while True:
        text = ask("your move> ")
        if text.strip().lower() in ("q", "quit", "exit"):
            return None
        if text.strip().lower() in ("?", "help", "rules"):
            say(RULES)
            continue
        try:
            move = parse_move(text)
        except LooplmError as err:
            say(str(err))
            continue
        if COST[move] > energy:
            say(f"you cannot afford {MOVES[move]}: it costs {COST[move]} energy and you have {energy}")
            continue
        return move


def play_terminal(strategy, ask: Callable[[str], str], say: Callable[[str], None],
                  seed: int = 0, max_pairs: int = MAX_PAIRS) -> dict[str, int]:
    """Games of a person (seat 1, through ``ask``/``say``) against ``strategy`` until the person
    quits or input ends (EOFError from ``ask``). Returns {"wins", "losses", "draws"} of the person."""
    rng = np.random.default_rng(seed)
    tally = {"wins": 0, "losses": 0, "draws": 0}
    say("Bor-bor-zan: you move first in the record, the AI second; both move at once.")
    say("Type a move name (or a prefix: 'bu' for buddha), 'help' for the rules, 'quit' to stop.")
    try:
        while True:
            e1 = e2 = 0
            strategy.start(1)
            for pair in range(1, max_pairs + 1):
                options = ", ".join(f"{m} ({_cost(i)})" for i, m in enumerate(MOVES) if COST[i] <= e1)
                say(f"\npair {pair}: energy: you {e1}, AI {e2}.  You can play: {options}")
                b = int(strategy.choose(np.array([e2]), np.array([e1]), rng)[0])  # fixed before you move
                a = _ask_move(e1, ask, say)
                if a is None:
                    say("bye")
                    return tally
                w = int(winner(a, b))
                n1, n2 = play(e1, e2, a, b)
                e1, e2 = int(n1), int(n2)
                say(f"you: {MOVES[a]}, AI: {MOVES[b]}" + {0: "", 1: f" -- {MOVES[a]} kills {MOVES[b]}: you win!",
                                                          2: f" -- {MOVES[b]} kills {MOVES[a]}: the AI wins."}[w])
                if w:
                    tally["wins" if w == 1 else "losses"] += 1
                    break
                strategy.observe(np.array([a]), np.array([b]), np.array([True]))
            else:
                say(f"no kill in {max_pairs} pairs: a draw.")
                tally["draws"] += 1
            say(f"score: you {tally['wins']}, AI {tally['losses']}, draws {tally['draws']}")
            if ask("play again? [Y/n] ").strip().lower() not in ("y", "yes", ""):
                say("bye")
                return tally
    except EOFError:
        say("\nbye")
        return tally
