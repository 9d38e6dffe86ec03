"""``looplm play borborzan --run RUNDIR [--vs random --games N] [--seed S]``.

Without ``--vs``: a person plays the trained model's AI in the terminal. With ``--vs PLAYER``:
``--games`` games of the AI against that player, batched, beside the same number of games of
a random player against it (:func:`looplm.games.play.match`).
"""

from __future__ import annotations

import json

from looplm.cli.args import MAX_COUNT, SEED, count
from looplm.cli.common import path_arg
from looplm.games.play import AI, MAX_PAIRS, ModelForecaster, PolicyStrategy, match, play_terminal
from looplm.games.players import PLAYERS, get_player
from looplm.rundir import load_run


def add_parser(sub) -> None:
    p = sub.add_parser("play", help="play a game against a trained model, or simulate many")
    p.add_argument("game", choices=["borborzan"], help="the game")
    p.add_argument("--run", dest="rundir", type=path_arg, metavar="RUNDIR", required=True, help="run directory of a model trained on --data borborzan")
    p.add_argument("--vs", choices=sorted(PLAYERS), help="simulate the AI against this player instead of a person")
    p.add_argument("--games", type=count(MAX_COUNT), default=10_000, help="games to simulate with --vs (default 10000)")
    p.add_argument("--max-pairs", type=count(MAX_COUNT), default=MAX_PAIRS,
                   help=f"a game with no kill after this many pairs is a draw (default {MAX_PAIRS})")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--json", action="store_true", help="with --vs: print JSON")
    p.set_defaults(handle=handle)


def handle(args) -> int:
    loaded = load_run(args.rundir)
    ai = AI(ModelForecaster(loaded.model, loaded.vocab.itos))
    if args.vs is None:
        play_terminal(ai, input, print, seed=args.seed, max_pairs=args.max_pairs)
        return 0
    opponent = get_player(args.vs)
    results = [match(s, opponent, args.games, args.seed, args.max_pairs)
               for s in (ai, PolicyStrategy(get_player("random")))]
    if args.json:
        print(json.dumps([{"player": r.name, "opponent": r.opponent, "games": r.n, **r.rates(),
                           "mean_pairs": r.mean_pairs, "max_pairs": r.max_pairs} for r in results], indent=2))
        return 0
    print(f"{args.games:,} games against {opponent.name} (seat 1), seed {args.seed}; "
          f"draw: no kill in {args.max_pairs} pairs")
    print(f"{'seat 2':<10}{'win':>9}{'loss':>9}{'draw':>9}{'pairs/game':>12}")
    for r in results:
        rates = r.rates()
        print(f"{r.name:<10}{rates['wins']:>9.4f}{rates['losses']:>9.4f}{rates['draws']:>9.4f}{r.mean_pairs:>12.2f}")
    return 0
