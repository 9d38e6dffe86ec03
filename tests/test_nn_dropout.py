"""The AWD dropouts: what each drops, how much, and that eval mode leaves everything alone."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from looplm.errors import LooplmError
from looplm.nn import LSTM, Dropout, EmbeddingDropout, RNNDropout, WeightDropout
from looplm.nn.dropout import MASK_LEVELS, dropout_mask


def assert_fraction(dropped: torch.Tensor, p: float):
    """The share of zeros is p, within 4 standard deviations of a binomial."""
    n = dropped.numel()
    assert abs(dropped.float().mean().item() - p) < 4 * math.sqrt(p * (1 - p) / n)


def assert_zero_or_rescaled(scale: torch.Tensor, p: float):
    """Every kept value is multiplied by 1/(1-p), every dropped one by 0 (p as the 15-bit mask
    realises it: within 1.5e-5, so the scale within 1e-4)."""
    kept = torch.isclose(scale, torch.tensor(1 / (1 - p)), rtol=1e-4)
    assert torch.all(kept | (scale == 0))


@pytest.mark.parametrize("p", [0.1, 0.4, 0.9])
def test_dropout_zeroes_p_of_the_values_independently_and_rescales_the_rest(p):
    torch.manual_seed(0)
    x = (torch.rand(64, 16, 64) + 0.5).requires_grad_()  # no zeros of its own
    y = Dropout(p).train()(x)
    mask = (y / x).detach()
    assert_zero_or_rescaled(mask, p)
    assert_fraction(mask == 0, p)
    assert_fraction(mask[:, 0] == 0, p)                  # each step draws its own mask ...
    assert (mask[:, 0] != mask[:, 1]).any()              # ... unlike RNNDropout
    y.sum().backward()
    torch.testing.assert_close(x.grad, mask)             # the gradient flows through the kept values


def test_dropout_matches_torch_dropout_in_distribution_and_eval_mode():
    x = torch.ones(200_000)
    torch.manual_seed(0)
    ours, theirs = Dropout(0.3).train()(x), nn.Dropout(0.3).train()(x)
    assert abs(ours.mean().item() - theirs.mean().item()) < 0.01  # both keep the expected value 1
    assert Dropout(0.3).eval()(x) is x and Dropout(0.0).train()(x) is x
    with pytest.raises(LooplmError, match="p must be in"):
        Dropout(1.0)


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_rnn_dropout_mask_is_constant_along_time(p):
    torch.manual_seed(0)
    x = torch.rand(16, 30, 64) + 0.5                     # no zeros of its own
    y = RNNDropout(p).train()(x)
    mask = y / x                                         # (bs, T, n): 0 or 1/(1-p)
    torch.testing.assert_close(mask, mask[:, :1].expand_as(mask))
    assert_zero_or_rescaled(mask, p)
    assert_fraction(mask[:, 0] == 0, p)


def test_rnn_dropout_is_the_identity_in_eval_mode_and_at_p0():
    x = torch.randn(2, 3, 4)
    assert RNNDropout(0.5).eval()(x) is x
    assert RNNDropout(0.0).train()(x) is x


def test_embedding_dropout_drops_whole_rows():
    torch.manual_seed(1)
    p, vocab = 0.3, 2000
    emb = nn.Embedding(vocab, 8)
    words = torch.arange(vocab).repeat(3, 2)              # every word, 6 times
    out = EmbeddingDropout(emb, p).train()(words)         # (3, 2*vocab, 8)
    scale = out / emb(words)
    per_word = scale.view(3, 2, vocab, 8).permute(2, 0, 1, 3).reshape(vocab, -1)
    torch.testing.assert_close(per_word, per_word[:, :1].expand_as(per_word))
    assert_zero_or_rescaled(per_word, p)
    assert_fraction(per_word[:, 0] == 0, p)


def test_embedding_dropout_is_the_lookup_in_eval_mode_and_trains_the_embedding():
    emb = nn.Embedding(10, 4, padding_idx=0)
    words = torch.tensor([[0, 3, 9]])
    dp = EmbeddingDropout(emb, 0.5)
    torch.testing.assert_close(dp.eval()(words), emb(words))
    dp.train()(words).sum().backward()
    assert emb.weight.grad is not None and emb.weight.grad[0].abs().sum() == 0   # padding row


def test_weight_dropout_zeroes_the_right_fraction_and_keeps_the_raw_weight():
    torch.manual_seed(2)
    p = 0.4
    lstm = LSTM(8, 50)
    raw = lstm.weight_hh_l0
    before = raw.detach().clone()
    wd = WeightDropout(lstm, p).train()
    dropped = wd.dropped_weights()["weight_hh_l0"]
    assert_fraction(dropped == 0, p)
    kept = dropped != 0
    torch.testing.assert_close(dropped[kept], before[kept] / (1 - p))
    wd(torch.randn(4, 2, 8))
    assert lstm.weight_hh_l0 is raw and torch.equal(raw, before)
    assert dict(lstm.named_parameters())["weight_hh_l0"] is raw
    assert set(wd.state_dict()) == {f"module.{k}" for k in lstm.state_dict()}


def test_weight_dropout_uses_one_mask_for_the_whole_sequence_and_trains_the_raw_weight():
    torch.manual_seed(3)
    lstm = LSTM(3, 6, batch_first=True)
    wd = WeightDropout(lstm, 0.5).train()
    x = torch.randn(2, 9, 3)
    torch.manual_seed(4)
    dropped = wd.dropped_weights()["weight_hh_l0"]
    torch.manual_seed(4)
    out, _ = wd(x)
    # the same as running all 9 steps with one fixed dropped matrix
    torch.testing.assert_close(out, lstm(x, weights={"weight_hh_l0": dropped})[0])
    out.pow(2).sum().backward()
    grad = lstm.weight_hh_l0.grad
    assert grad is not None
    assert torch.all(grad[dropped == 0] == 0)             # DropConnect: no gradient when dropped
    assert (grad[dropped != 0] != 0).float().mean() > 0.9


def test_weight_dropout_is_deterministic_in_eval_mode():
    torch.manual_seed(5)
    lstm = LSTM(3, 6)
    wd = WeightDropout(lstm, 0.5).eval()
    x = torch.randn(4, 2, 3)
    torch.testing.assert_close(wd(x)[0], lstm(x)[0], atol=0, rtol=0)
    torch.testing.assert_close(wd(x)[0], wd(x)[0], atol=0, rtol=0)


@pytest.mark.parametrize("make", [lambda p: RNNDropout(p),
                                  lambda p: EmbeddingDropout(nn.Embedding(3, 2), p),
                                  lambda p: WeightDropout(LSTM(2, 2), p)])
@pytest.mark.parametrize("p", [1.0, -0.1, 1.5])
def test_probability_outside_0_1_is_refused(make, p):
    with pytest.raises(LooplmError, match=r"\[0, 1\)"):
        make(p)


@pytest.mark.parametrize("p", [0.1, 0.4, 0.8])
def test_scratch_dropout_matches_torch_dropout(p):
    """The chapter's hand-written Dropout: the same share of zeros as nn.Dropout, kept values
    scaled by 1/(1-p), a fresh independent mask per call and element, the identity in eval."""
    from looplm.nn import ChapterDropout

    torch.manual_seed(0)
    x = torch.ones(200, 300)
    ours, theirs = ChapterDropout(p), nn.Dropout(p)
    a, b = ours(x), theirs(x)
    assert_fraction(a == 0, p)
    assert_fraction(b == 0, p)
    assert_zero_or_rescaled(a, p)
    assert abs(a.mean().item() - 1) < 4 * math.sqrt(p / (1 - p) / x.numel())  # expected value kept
    assert not torch.equal(ours(x), a)  # a new mask every call
    rows, cols = (a == 0).float().mean(1), (a == 0).float().mean(0)  # no structure along either axis
    assert rows.std() < 2 * math.sqrt(p * (1 - p) / 300) and cols.std() < 2 * math.sqrt(p * (1 - p) / 200)
    ours.eval()
    y = torch.randn(4, 5)
    assert ours(y) is y
    assert ChapterDropout(0.0)(y) is y


def test_lm7_takes_the_chapters_dropout_with_dropout_scratch():
    from looplm.models.registry import build_model
    from looplm.nn import ChapterDropout, Dropout

    assert type(build_model("lm7", 12).drop) is Dropout
    model = build_model("lm7", 12, dropout="scratch")
    assert type(model.drop) is ChapterDropout and model.drop.p == model.config.p
    with pytest.raises(LooplmError, match="dropout must be one of"):
        build_model("lm7", 12, dropout="fancy")


@settings(max_examples=40, deadline=None)
@given(p=st.floats(0.0, 0.999), n=st.integers(1, 4099), dtype=st.sampled_from([torch.float32, torch.bfloat16]))
def test_dropout_mask_is_unbiased_with_p_to_15_bits(p, n, dtype):
    """Any p and size (not only multiples of the four elements a draw feeds): two values only,
    0 and the exact inverse of the kept share, so the mask's expectation is 1; the drop rate is
    p rounded to 1/32768."""
    torch.manual_seed(n)
    mask = dropout_mask(torch.empty(0, dtype=dtype), (n, 3), p)
    assert mask.shape == (n, 3) and mask.dtype == dtype
    drop = min(round(p * MASK_LEVELS), MASK_LEVELS - 1)
    scale = torch.tensor(MASK_LEVELS / (MASK_LEVELS - drop), dtype=dtype)
    assert torch.all((mask == 0) | (mask == scale))
    assert abs(drop / MASK_LEVELS - p) <= 0.5 / MASK_LEVELS
    if n * 3 >= 3000 and 0.05 < p < 0.95:
        assert_fraction(mask == 0, drop / MASK_LEVELS)


def test_dropout_mask_has_no_pattern_across_the_four_elements_of_a_draw():
    """Each of the four 15-bit fields of a 64-bit draw (the top one has a bit fewer) drops at
    rate p, and neighbouring fields are independent: no field is a copy or a shift of another."""
    torch.manual_seed(0)
    p = 0.3
    mask = dropout_mask(torch.empty(0), (400_000,), p).view(-1, 4) == 0     # (draws, fields)
    for field in range(4):
        assert_fraction(mask[:, field], p)
    both = (mask[:, :3] & mask[:, 1:]).float().mean(0)                     # P(drop, drop) = p^2
    assert torch.all((both - p * p).abs() < 4 * math.sqrt(p * p * (1 - p * p) / mask.shape[0]))


def test_dropout_mask_follows_the_seed():
    torch.manual_seed(3)
    a = dropout_mask(torch.empty(0), (1000,), 0.5)
    torch.manual_seed(3)
    assert torch.equal(a, dropout_mask(torch.empty(0), (1000,), 0.5))
    assert not torch.equal(a, dropout_mask(torch.empty(0), (1000,), 0.5))
