"""Bor-bor-zan: the seed notebook's two-player game, its documents, and their exact optimum.

    rules     moves, cost and kill tables, one pair of moves (``play``), a live ``Game``
    players   known move distributions given the energies, by name (``random``, ``cautious``)
    document  seeded games -> the seed's text ("zan to buddha , ... end . "), 80/20 split
    optimum   the true next-token distribution of a stream; ``optimal_loss`` / ``_accuracy``
    limit     the same optimum over infinitely many games, computed without sampling
    metrics   pure scores of a model's predictions against the truth
"""

from looplm.games.document import (
    VOCAB, Games, borborzan_corpus, encode, games_to_text, generate_games, split_games,
)
from looplm.games.limit import expected_optimum
from looplm.games.optimum import (
    StreamTruth, borborzan_scores, optimal_accuracy, optimal_loss, stream_truth,
)
from looplm.games.players import PLAYERS, get_player, resolve_players
from looplm.games.rules import MOVES, Game

__all__ = [
    "MOVES", "PLAYERS", "VOCAB", "Game", "Games", "StreamTruth", "borborzan_corpus",
    "borborzan_scores", "encode", "expected_optimum", "games_to_text", "generate_games",
    "get_player", "optimal_accuracy", "optimal_loss", "resolve_players", "split_games",
    "stream_truth",
]
