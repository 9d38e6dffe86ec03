"""The AWD-LSTM: its protocol, its dropouts in place, its presets and their validation."""

import dataclasses

import pytest
import torch

from looplm.errors import LooplmError
from looplm.models.awd_lstm import AWD_LSTM_PRESETS, AWDLSTM, AWDLSTMConfig
from looplm.models.registry import model_spec
from looplm.state import detach_state, fit_state

VOCAB, EMB, HID = 30, 8, 12


def small(**kw) -> AWDLSTMConfig:
    base = dict(vocab_sz=VOCAB, emb_sz=EMB, n_hid=HID, n_layers=3, output_p=0.4, hidden_p=0.3,
                input_p=0.5, embed_p=0.1, weight_p=0.5)
    return AWDLSTMConfig(**{**base, **kw})


def tokens(bs=4, sl=7, seed=0):
    return torch.randint(0, VOCAB, (bs, sl), generator=torch.Generator().manual_seed(seed))


def test_forward_shapes_and_state():
    torch.manual_seed(0)
    model = AWDLSTM(small())
    x = tokens()
    logits, state = model(x)
    assert logits.shape == (4, 7, VOCAB)
    assert [tuple(s.shape) for s in state] == [(1, 4, HID)] * 4 + [(1, 4, EMB)] * 2
    logits, state2, (raw, dropped) = model(x, detach_state(state), return_activations=True)
    assert raw.shape == dropped.shape == (4, 7, EMB)
    assert fit_state(state2, 4) is state2
    assert AWDLSTM.layout == "every"


def test_state_carries_information_and_is_not_detached():
    torch.manual_seed(1)
    model = AWDLSTM(small()).eval()
    x1, x2 = tokens(seed=1), tokens(seed=2)
    _, state = model(x1)
    with_state, _ = model(x2, state)
    without, _ = model(x2)
    assert not torch.allclose(with_state, without)
    with_state.sum().backward()                       # reaches back through the first chunk
    assert all(s.grad_fn is not None for s in state)
    assert model.rnns[0].module.weight_ih_l0.grad is not None


def test_a_state_of_another_batch_size_starts_from_zeros():
    torch.manual_seed(2)
    model = AWDLSTM(small()).eval()
    _, state = model(tokens(bs=4))
    x = tokens(bs=2, seed=3)
    torch.testing.assert_close(model(x, state)[0], model(x)[0])


def test_weights_are_tied_while_n_hid_differs():
    model = AWDLSTM(small())
    assert model.decoder.weight is model.encoder.emb.weight
    assert model.rnns[0].module.hidden_size == HID and model.rnns[-1].module.hidden_size == EMB
    untied = AWDLSTM(small(tie_weights=False))
    assert untied.decoder.weight is not untied.encoder.emb.weight


def test_eval_mode_is_deterministic_and_equals_no_dropout():
    torch.manual_seed(3)
    model = AWDLSTM(small()).eval()
    plain = AWDLSTM(small(drop_mult=0.0)).train()     # every p is 0: dropout is off
    plain.load_state_dict(model.state_dict())
    x = tokens()
    out1, _, (raw, dropped) = model(x, return_activations=True)
    out2, _ = model(x)
    torch.testing.assert_close(out1, out2, atol=0, rtol=0)
    torch.testing.assert_close(raw, dropped, atol=0, rtol=0)
    torch.testing.assert_close(plain(x)[0], out1)


def test_training_mode_drops_and_each_call_draws_new_masks():
    torch.manual_seed(4)
    model = AWDLSTM(small()).train()
    x = tokens()
    out1, _, (raw, dropped) = model(x, return_activations=True)
    out2, _ = model(x)
    assert not torch.allclose(out1, out2)
    zeroed = dropped == 0                             # output dropout, one mask per sequence
    assert torch.equal(zeroed, zeroed[:, :1].expand_as(zeroed))
    assert 0.2 < zeroed[:, 0].float().mean() < 0.6    # output_p = 0.4 on 4 * 8 units


def test_the_raw_hidden_weights_receive_gradients():
    torch.manual_seed(5)
    model = AWDLSTM(small()).train()
    logits, _ = model(tokens())
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens(seed=9).flatten()).backward()
    for rnn in model.rnns:
        grad = rnn.module.weight_hh_l0.grad
        assert grad is not None and grad.abs().sum() > 0
    assert {n for n, _ in model.named_parameters() if "weight_hh" in n} == \
        {f"rnns.{k}.module.weight_hh_l0" for k in range(3)}


def test_drop_mult_scales_every_p():
    cfg = small(drop_mult=0.5)
    model = AWDLSTM(cfg)
    assert model.encoder.embed_p == pytest.approx(0.05)
    assert model.input_dp.p == pytest.approx(0.25)
    assert all(dp.p == pytest.approx(0.15) for dp in model.hidden_dps)
    assert model.output_dp.p == pytest.approx(0.2)
    assert all(rnn.weight_p == pytest.approx(0.25) for rnn in model.rnns)
    assert cfg.p("weight_p") == pytest.approx(0.25)


def awd_lstm_preset(name: str, **overrides) -> AWDLSTMConfig:
    """The preset ``name`` with ``overrides`` applied, as ``looplm train --preset`` makes it."""
    spec = model_spec("awd-lstm")
    return spec.make_config(VOCAB, **{**spec.preset(name), **overrides})


def test_presets_by_name():
    fastai = awd_lstm_preset("fastai")
    assert (fastai.emb_sz, fastai.n_hid, fastai.n_layers) == (400, 1152, 3)
    assert (fastai.output_p, fastai.hidden_p, fastai.input_p, fastai.embed_p, fastai.weight_p) == \
        (0.1, 0.15, 0.25, 0.02, 0.2)
    paper = awd_lstm_preset("paper", n_hid=64)
    assert (paper.emb_sz, paper.n_hid, paper.n_layers) == (400, 64, 3)
    assert (paper.output_p, paper.hidden_p, paper.input_p, paper.embed_p, paper.weight_p) == \
        (0.4, 0.3, 0.65, 0.1, 0.5)
    defaults = {f.name: f.default for f in dataclasses.fields(AWDLSTMConfig) if f.name != "vocab_sz"}
    assert {k: defaults[k] for k in AWD_LSTM_PRESETS["fastai"]} == AWD_LSTM_PRESETS["fastai"]


@pytest.mark.parametrize("call, message", [
    (lambda: awd_lstm_preset("merity"), "unknown preset 'merity' for awd-lstm"),
    (lambda: awd_lstm_preset("fastai", hidden_size=3), "model awd-lstm has no setting 'hidden_size'"),
    (lambda: AWDLSTMConfig(vocab_sz=0), "vocab_sz must be at least 1"),
    (lambda: awd_lstm_preset("paper", weight_p=1.0), r"weight_p must be in \[0, 1\)"),
    (lambda: awd_lstm_preset("paper", input_p=-0.1), r"input_p must be in \[0, 1\)"),
    (lambda: awd_lstm_preset("paper", drop_mult=2.0), r"input_p \* drop_mult"),
    (lambda: awd_lstm_preset("fastai", n_layers=0), "n_layers must be at least 1"),
    (lambda: small(pad_token=VOCAB), "pad_token"),
])
def test_bad_settings_raise_a_looplm_error(call, message):
    with pytest.raises(LooplmError, match=message):
        call()


def test_one_layer_and_padding_token():
    torch.manual_seed(6)
    model = AWDLSTM(small(n_layers=1, pad_token=0))
    assert len(model.rnns) == 1 and not model.hidden_dps
    assert model.encoder.emb.weight[0].abs().sum() == 0
    assert model(tokens())[0].shape == (4, 7, VOCAB)


def test_learns_a_repeating_sequence():
    """Adam on a periodic stream, dropouts on: the loss falls far below log(6) = 1.8,
    where the model sits while it knows only the token frequencies (its small init
    keeps it there for a few dozen steps)."""
    torch.manual_seed(7)
    model = AWDLSTM(small(n_layers=2, emb_sz=32, n_hid=32, drop_mult=0.1))
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    stream = torch.arange(6).repeat(4, 5)             # (4, 30): 0 1 2 3 4 5 0 1 ...
    x, y = stream[:, :-1], stream[:, 1:]
    for _ in range(150):
        logits, _ = model(x)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5


def test_the_embedding_starts_as_fastai_or_as_pytorch_asks():
    torch.manual_seed(0)
    fastai = AWDLSTM(small(vocab_sz=500, emb_sz=64)).encoder.emb.weight.detach()
    torch.manual_seed(0)
    pytorch = AWDLSTM(small(vocab_sz=500, emb_sz=64, emb_init="torch")).encoder.emb.weight.detach()
    assert fastai.abs().max() <= 0.1 and fastai.std() == pytest.approx(0.2 / 12 ** 0.5, rel=0.05)
    assert pytorch.std() == pytest.approx(1.0, rel=0.05) and pytorch.abs().max() > 1
    with pytest.raises(LooplmError, match="emb_init must be one of fastai, torch"):
        small(emb_init="xavier")
