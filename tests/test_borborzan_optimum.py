"""The exact next-token distribution, the optimum it implies, and the model scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from looplm.errors import LooplmError
from looplm.games import (
    VOCAB, borborzan_corpus, borborzan_scores, encode, expected_optimum, optimal_accuracy,
    optimal_loss, stream_truth,
)
from looplm.games.metrics import (
    cross_entropy, end_precision_recall, loss_gap, mean_kl, unaffordable_mass,
)

# energies before each pair: (0,0); zan/zan -> (1,1); steal/shield -> (1,0) (the steal takes
# player 2's 1); shoot kills zan; then a new game at (0,0) where shield kills buddha.
STREAM = "zan to zan , steal to shield , shoot to zan , end . shield to buddha , end ."
TOKENS = STREAM.split()


def test_hand_worked_stream_for_random_players():
    truth = stream_truth(encode(STREAM))
    p = truth.probs
    assert p.shape == (20, 12)
    want = {0: 1 / 3, 2: 1 / 3, 4: 1 / 6, 6: 1 / 6, 8: 1 / 6, 10: 1 / 3, 14: 1 / 3, 16: 1 / 3}
    for t, tok in enumerate(TOKENS):
        assert p[t, VOCAB.index(tok)] == pytest.approx(want.get(t, 1.0)), (t, tok)
    assert p[12].tolist() == [0.0] * 10 + [1.0, 0.0]  # "end" is certain after the kill
    assert truth.move_next.nonzero()[0].tolist() == sorted(want)
    names = lambda t: [VOCAB[i] for i in np.flatnonzero(truth.unaffordable[t])]
    assert names(2) == ["shoot", "reflect", "steal", "chick", "big-shield"]
    assert names(8) == ["chick", "big-shield"] and names(12) == []
    assert optimal_loss(encode(STREAM)) == pytest.approx((4 * math.log(3) + 3 * math.log(6)) / 19)
    # argmax ties go to the lowest id (zan): right at t=2 and t=10, plus the 12 certain tokens
    assert optimal_accuracy(encode(STREAM)) == pytest.approx(14 / 19)


def test_strategic_player_two_uses_its_own_energy_first():
    p = stream_truth(encode(STREAM), "random,cautious").probs
    # at t=6 player 2 has 1 and faces 1 (can be shot): shield 6, five other moves 1 each
    assert p[6, VOCAB.index("shield")] == pytest.approx(6 / 11)
    # at t=10 player 2 has 0 and faces 1: shield 6 of 8
    assert p[10, VOCAB.index("shield")] == pytest.approx(6 / 8)


def test_any_vocab_order_and_extra_tokens_give_the_same_optimum():
    ids = encode(STREAM)
    vocab = ["", "end", ".", "to", ","] + list(reversed(VOCAB[:8])) + ["xxunk"]
    theirs = encode(TOKENS, vocab)
    truth = stream_truth(theirs, vocab=vocab)
    assert truth.probs.shape == (20, 14) and truth.probs[:, [0, 13]].sum() == 0
    assert optimal_loss(theirs, vocab=vocab) == pytest.approx(optimal_loss(ids))
    with pytest.raises(LooplmError, match="lacks"):
        stream_truth(ids[:3], vocab=VOCAB[:11])


def test_a_stream_may_stop_anywhere():
    full = stream_truth(encode(STREAM)).probs
    for cut in range(1, len(TOKENS)):
        assert np.array_equal(stream_truth(encode(TOKENS[:cut])).probs, full[:cut])


@pytest.mark.parametrize("bad, where", [
    ("shoot to zan , end .", "token 0 .* impossible"),  # no energy to shoot
    ("zan to zan , end .", "token 4 .* impossible"),  # nobody died
    ("shield to buddha , zan to zan , end .", "token 4 .* impossible"),  # the game was over
    ("zan zan to", "token 1 .* format"),
    ("zan to zan . zan", "token 3 .* format"),
    ("end .", "token 0 .* format"),
])
def test_streams_that_break_the_rules_are_refused(bad, where):
    with pytest.raises(LooplmError, match=where):
        stream_truth(encode(bad))


def test_must_show_optimum_for_random_players():
    """The seed's setting: 0.566 nats/token and 68.5 %; 20,000 games fix both to ~0.001."""
    limit = expected_optimum()
    assert limit["optimal_loss"] == pytest.approx(0.56600, abs=1e-5)
    assert limit["optimal_accuracy"] == pytest.approx(0.68527, abs=1e-5)
    train, valid = borborzan_corpus(20_000, seed=0)
    ids = encode(train + valid)
    assert optimal_loss(ids) == pytest.approx(limit["optimal_loss"], abs=0.003)
    assert optimal_accuracy(ids) == pytest.approx(limit["optimal_accuracy"], abs=0.003)


def test_limit_agrees_with_a_long_stream_for_a_strategic_player():
    limit = expected_optimum("cautious,random")
    assert limit == pytest.approx(expected_optimum("cautious,random", max_energy=20), abs=1e-9)
    train, valid = borborzan_corpus(10_000, "cautious,random", seed=1)
    ids = encode(train + valid)
    for key, measure in (("optimal_loss", optimal_loss), ("optimal_accuracy", optimal_accuracy)):
        assert measure(ids, "cautious,random") == pytest.approx(limit[key], abs=0.005)


def test_metrics_on_hand_built_cases():
    probs = np.array([[0.5, 0.5, 0.0], [0.25, 0.75, 0.0]])
    assert cross_entropy(probs, [0, 1]) == pytest.approx(-(math.log(0.5) + math.log(0.75)) / 2)
    assert loss_gap(probs, probs, [0, 1]) == 0.0
    true = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    kl_rows = [math.log(2), 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)]
    assert mean_kl(true, probs) == pytest.approx(sum(kl_rows) / 2)
    assert mean_kl(true, true) == 0.0
    model = np.array([[0.1, 0.2, 0.7], [0.3, 0.3, 0.4], [1.0, 0.0, 0.0]])
    bad = np.array([[0, 0, 1], [1, 0, 0], [1, 1, 1]], dtype=bool)
    assert unaffordable_mass(model, bad, [True, True, False]) == pytest.approx(0.5)
    # end = id 2: called at rows 0, 1, 3; came at rows 0, 2, 3 -> precision 2/3, recall 2/3
    calls = np.eye(3)[[2, 2, 0, 2, 1]]
    assert end_precision_recall(calls, [2, 0, 2, 2, 1], end_id=2) == pytest.approx((2 / 3, 2 / 3))
    assert end_precision_recall(calls[[4]], [1], end_id=2) == (0.0, 0.0)


def test_scores_of_the_truth_and_of_a_uniform_model():
    train, valid = borborzan_corpus(300, seed=2)
    ids = encode(valid)
    truth = stream_truth(ids).probs[1:]
    perfect = borborzan_scores(truth, ids)
    assert perfect["loss_gap"] == 0.0 and perfect["kl"] == 0.0
    assert perfect["unaffordable_mass"] == 0.0
    assert (perfect["end_precision"], perfect["end_recall"]) == (1.0, 1.0)
    assert perfect["accuracy"] == perfect["optimal_accuracy"] == optimal_accuracy(ids)
    uniform = borborzan_scores(np.full(truth.shape, 1 / 12), ids)
    assert uniform["loss"] == pytest.approx(math.log(12))
    assert uniform["loss_gap"] == pytest.approx(math.log(12) - optimal_loss(ids))
    assert uniform["unaffordable_mass"] > 0 and uniform["end_recall"] == 0.0
    with pytest.raises(LooplmError, match="shape"):
        borborzan_scores(truth[1:], ids)
