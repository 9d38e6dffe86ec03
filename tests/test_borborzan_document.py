"""Generated games follow the rules, and documents split 80/20 like the seed's."""

from __future__ import annotations

import numpy as np
import pytest

from looplm.errors import LooplmError
from looplm.games import VOCAB, borborzan_corpus, encode, games_to_text, generate_games, split_games
from looplm.games.rules import COST, DEADLY, play


@pytest.mark.parametrize("players", ["random,random", "cautious,random", "random,cautious"])
def test_games_are_legal_and_end_at_their_first_kill(players):
    games = generate_games(3000, players, seed=1)
    assert len(games) == 3000 and games.offsets[-1] == len(games.moves)
    for i in range(len(games)):
        pairs = games.moves[games.offsets[i]:games.offsets[i + 1]].astype(np.int64)
        deadly = DEADLY[pairs[:, 0], pairs[:, 1]]
        assert deadly[-1] and not deadly[:-1].any()
        e1 = e2 = 0
        for a, b in pairs:
            assert e1 >= COST[a] and e2 >= COST[b]
            e1, e2 = (int(e) for e in play(e1, e2, a, b))


def test_generation_is_seeded():
    a, b = generate_games(500, seed=7), generate_games(500, seed=7)
    assert np.array_equal(a.moves, b.moves) and np.array_equal(a.offsets, b.offsets)
    assert not np.array_equal(a.moves, generate_games(500, seed=8).moves)


def test_corpus_splits_games_80_20_and_record_reads_like_the_seed():
    train, valid = borborzan_corpus(10, seed=0)
    assert train.count("end . ") == 8 and valid.count("end . ") == 2
    assert train + valid == games_to_text(generate_games(10, seed=0))
    assert valid.endswith(" , end . ") and not valid.startswith(" ")
    games = generate_games(10, seed=0)
    first = " ".join(f"{x} to {y} ," for x, y in games.record(0)) + " end . "
    assert train.startswith(first)
    head, tail = split_games(games)
    assert (len(head), len(tail)) == (8, 2)
    assert games_to_text(tail) == valid


def test_bad_counts_are_user_errors():
    with pytest.raises(LooplmError, match="at least 1"):
        generate_games(0)
    with pytest.raises(LooplmError, match="at least 2 games"):
        borborzan_corpus(1)


def test_players_that_never_end_a_game_are_refused():
    class Shielder:
        name = "shielder"

        def policy(self, my_energy, opp_energy):
            p = np.zeros(np.shape(my_energy) + (8,))
            p[..., 1] = 1.0
            return p

    with pytest.raises(LooplmError, match="may never end a game"):
        generate_games(5, (Shielder(), Shielder()), max_pairs=50)


def test_encode_maps_words_to_vocab_ids():
    assert VOCAB == ("zan", "shield", "shoot", "reflect", "buddha", "steal", "chick",
                     "big-shield", "to", ",", "end", ".")
    assert encode("zan to buddha , end . ").tolist() == [0, 8, 4, 9, 10, 11]
    with pytest.raises(LooplmError, match="'xxbos'"):
        encode("zan to xxbos")
