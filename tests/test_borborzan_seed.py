"""looplm.games against a literal transcription of the seed notebook (the reference oracle).

``SeedGame``, ``DataGen``, ``get_one_rec`` and ``lst_to_doc`` are copied from
../shared/seeds/004_bf14a8c9f927618e.txt with one change: DataGen draws from a seeded
``random.Random`` instead of the global ``random`` module. The seed numbers moves 1..8,
looplm 0..7 (same order).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import numpy as np
import pytest

from looplm.games import VOCAB, Game, encode, expected_optimum, generate_games, stream_truth
from looplm.games.document import Games, games_to_text
from looplm.games.rules import DEADLY, KILLS, MOVES, available, play, winner


class SeedGame:
    def __init__(self):
        self.winner = 0
        self.e1 = 0 # energy of player 1, etc.
        self.e2 = 0
        self.over = False # the game is still on
        self.requires = [0, 0, 0, 1, 1, 0, 1, 3, 2]
        self.text = [0, "zan", "shield", "shoot", "reflect", "buddha", "steal", "chick", "big-shield"]
        self.record = []
    def act(self, action1, action2):
        # determine if the game is still on
        if self.determine(action1, action2):
            # player 1 wins
            self.over = True
            self.winner = 1
        elif self.determine(action2, action1):
            self.over = True
            self.winner = 2
        if action1 == 1:
            self.e1 += 1
        elif action1 in [3, 4, 6]:
            self.e1 -= 1
        elif action1 == 7:
            self.e1 -= 3
        elif action1 == 8:
            self.e1 -= 2
        if action2 == 1:
            self.e2 += 1
        elif action2 in [3, 4, 6]:
            self.e2 -= 1
        elif action2 == 7:
            self.e2 -= 3
        elif action2 == 8:
            self.e2 -= 2
        # buddha: the opponent's energy is emptied
        if action1 == 5:
            self.e2 = 0
        if action2 == 5:
            self.e1 = 0
        # two steals collide and do nothing
        if action1==6 and action2==6:
            return
        if action1==6 and action2!=5:
            self.e1+=self.e2
            self.e2 = 0
        if action2==6 and action1!=5:
            self.e2+=self.e1
            self.e1 = 0
        self.record.append((self.text[action1], self.text[action2]))
    def determine(self, act1, act2):
        if act1 == 2 and act2 == 5: return True
        if act1 == 3 and (act2 in [1, 5, 6, 8]): return True
        if act1 == 4 and act2 == 3: return True
        if act1 == 5 and act2 == 4: return True
        if act1 == 7 and act2 <= 6: return True
        if act1 == 8 and act2 == 5: return True
        return False


class DataGen(SeedGame):
    rng = random.Random(0)  # the one change: the seed calls the global random.choice

    def __init__(self):
        super().__init__()
        self.text_record = []

    def act(self):
        actions_available_1 = [i for i in range(1, 9) if self.requires[i]<=self.e1]
        actions_available_2 = [i for i in range(1, 9) if self.requires[i]<=self.e2]
        act_combination = self.rng.choice(actions_available_1), self.rng.choice(actions_available_2)
        super().act(*act_combination)
        text = self.text[act_combination[0]], self.text[act_combination[1]]
        self.text_record.append(text)
        return text


def get_one_rec():
    game = DataGen()
    while not game.over:
        game.act()
    return game.text_record


def lst_to_doc(lst):
    stream = ''
    for each in lst:
        stream += ' to '.join(each)+' , '
    stream += 'end . '
    return stream


@pytest.fixture(scope="module")
def seed_games() -> list[list[tuple[str, str]]]:
    DataGen.rng.seed(2024)
    return [get_one_rec() for _ in range(20_000)]


ENERGIES = [(0, 0), (1, 0), (0, 1), (1, 1), (2, 3), (3, 2), (4, 4), (7, 1)]


@pytest.mark.parametrize("a", range(8), ids=MOVES)
@pytest.mark.parametrize("b", range(8), ids=MOVES)
def test_every_pair_plays_as_the_seed(a, b):
    for e1, e2 in ENERGIES:
        seed = SeedGame()
        seed.e1, seed.e2 = e1, e2
        seed.act(a + 1, b + 1)
        n1, n2 = play(e1, e2, a, b)
        assert (int(n1), int(n2)) == (seed.e1, seed.e2), (e1, e2)
        assert int(winner(a, b)) == seed.winner
        assert bool(DEADLY[a, b]) == seed.over
        game = Game(e1, e2)
        game.act(a, b)
        state = (game.e1, game.e2, game.winner, game.over)
        assert state == (seed.e1, seed.e2, seed.winner, seed.over)


def test_kill_table_reads_as_the_seed_comments():
    victims = {
        "shield": {"buddha"},  # 拜佛拜死: buddha against a shield dies
        "shoot": {"zan", "buddha", "steal", "big-shield"},  # 开枪打死
        "reflect": {"shoot"},  # 反弹: reflect sends the shot back
        "buddha": {"reflect"},  # 鄙视佛祖: despising buddha
        "chick": {"zan", "shield", "shoot", "reflect", "buddha", "steal"},  # 鸡无敌
        "big-shield": {"buddha"},  # 大盾秀
    }
    table = {MOVES[a]: {MOVES[b] for b in range(8) if KILLS[a, b]} for a in range(8)}
    assert table == {m: victims.get(m, set()) for m in MOVES}
    # no pair kills both ways, so the seed's player-1-first order never decides a game
    assert not (KILLS & KILLS.T).any()
    assert DEADLY.sum() == 2 * KILLS.sum() == 28


def test_requires_is_the_cost_table():
    requires = SeedGame().requires[1:]
    for energy in range(5):
        assert available(energy).tolist() == [r <= energy for r in requires]


def test_two_steals_cost_both_one_and_the_seed_record_drops_the_pair():
    seed = SeedGame()
    seed.e1, seed.e2 = 2, 1
    seed.act(6, 6)
    assert (seed.e1, seed.e2, seed.record) == (1, 0, [])
    assert [int(e) for e in play(2, 1, 5, 5)] == [1, 0]
    # ... but documents come from DataGen.text_record, which keeps it, and so does looplm.
    record = [("steal", "steal"), ("shoot", "zan")]
    moves = np.array([[MOVES.index(x), MOVES.index(y)] for x, y in record], dtype=np.int8)
    assert games_to_text(Games(moves, np.array([0, 2]))) == lst_to_doc(record)


def test_buddha_and_steal_quirks():
    # zan's +1 is emptied by the opponent's buddha; steal against buddha pays 1 and loses all
    assert [int(e) for e in play(2, 3, 0, 4)] == [0, 3]
    assert [int(e) for e in play(3, 2, 5, 4)] == [0, 2]
    # a steal takes the opponent's energy after the opponent's own move (zan: +1)
    assert [int(e) for e in play(1, 2, 5, 0)] == [3, 0]
    assert [int(e) for e in play(2, 2, 4, 4)] == [0, 0]


def test_documents_are_the_seed_format():
    doc = lst_to_doc([("buddha", "zan"), ("buddha", "shoot")])
    assert doc == "buddha to zan , buddha to shoot , end . "
    games = generate_games(50, seed=3)
    assert games_to_text(games) == "".join(lst_to_doc(games.record(i)) for i in range(len(games)))


def _token_freqs(text: str) -> np.ndarray:
    return np.bincount(encode(text), minlength=len(VOCAB)) / len(text.split())


def test_random_games_are_distributed_as_the_seed_generator(seed_games):
    ours = generate_games(len(seed_games), seed=5)
    lengths = np.diff(ours.offsets)
    seed_lengths = np.array([len(g) for g in seed_games])
    limit = expected_optimum()["pairs_per_game"]
    se = lengths.std() / np.sqrt(len(lengths))
    assert abs(lengths.mean() - limit) < 5 * se and abs(seed_lengths.mean() - limit) < 5 * se
    for k in (1, 2, 5):
        p = (seed_lengths == k).mean()
        assert abs((lengths == k).mean() - p) < 5 * np.sqrt(2 * p * (1 - p) / len(lengths))
    seed_text = "".join(lst_to_doc(g) for g in seed_games)
    f, g = _token_freqs(games_to_text(ours)), _token_freqs(seed_text)
    n = len(seed_text.split())
    assert np.all(np.abs(f - g) < 5 * np.sqrt(2 * g * (1 - g) / n) + 1e-12)


def _check_against_monte_carlo(tokens: list[str], players: str) -> None:
    """Group positions by everything read so far in the game; the truth must be one row per
    group and must match the frequencies of the tokens that came next."""
    probs = stream_truth(encode(tokens), players).probs
    seen, truth, prefix = defaultdict(Counter), {}, ()
    for t, tok in enumerate(tokens):
        seen[prefix][tok] += 1
        row = truth.setdefault(prefix, probs[t])
        assert np.array_equal(row, probs[t]), prefix
        prefix = () if tok == "." else prefix + (tok,)
    checked = [p for p in seen if sum(seen[p].values()) >= 400]
    assert len(checked) >= 15 and any(len(p) >= 6 for p in checked)
    for p in checked:
        n = sum(seen[p].values())
        freq = np.array([seen[p][w] for w in VOCAB]) / n
        q = truth[p]
        assert np.all(np.abs(freq - q) <= 5 * np.sqrt(q * (1 - q) / n) + 1e-12), (p, freq, q)


def test_true_distribution_matches_monte_carlo_on_seed_games(seed_games):
    tokens = "".join(lst_to_doc(g) for g in seed_games).split(" ")[:-1]  # seed's trailing ''
    _check_against_monte_carlo(tokens, "random,random")


def test_true_distribution_matches_monte_carlo_for_a_strategic_player():
    games = generate_games(15_000, "random,cautious", seed=11)
    _check_against_monte_carlo(games_to_text(games).split(), "random,cautious")
