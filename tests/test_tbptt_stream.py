"""TBPTT on float streams with a pytree state, and TBPTTStream: pieces equal whole.

Brute force for update i (as in test_tbptt.py): a separate full forward pass from
position 0 gives the state entering the window [w, t); plain backprop over that
window gives the gradient. Everything in float64, within 1e-10.
"""

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file
from torch import nn

from tbptt_reference import brute_force as reference, grads, state_at

from looplm.errors import LooplmError
from looplm.state import state_leaves
from looplm.tbptt import TBPTTStream, truncated_bptt
from looplm.tbptt.stream import _History

N_IN, N_OUT = 3, 2


class DictRNN(nn.Module):
    """A GRU then an LSTM over (bs, n, N_IN) floats, with a dict state that also carries an
    integer step count (read by the output, so it must be carried right) and a None leaf."""

    def __init__(self, n_hidden: int = 4):
        super().__init__()
        self.gru = nn.GRU(N_IN, n_hidden, batch_first=True)
        self.lstm = nn.LSTM(n_hidden, n_hidden, batch_first=True)
        self.out = nn.Linear(n_hidden, N_OUT)

    def forward(self, x, state=None):
        state = state or {"gru": None, "lstm": None, "step": torch.zeros((), dtype=torch.int64), "spare": None}
        g, h_gru = self.gru(x, state["gru"])  # (bs, n, n_hidden)
        h, (h_lstm, c_lstm) = self.lstm(g, state["lstm"])
        steps = state["step"] + torch.arange(1, x.shape[1] + 1)  # (n,) the count after each step
        out = self.out(h) + 1e-3 * steps.to(h.dtype)[None, :, None]  # (bs, n, N_OUT)
        return out, {"gru": h_gru, "lstm": [h_lstm, c_lstm], "step": steps[-1], "spare": None}


def mse(out, y):
    return F.mse_loss(out, y, reduction="sum")


def make(bs=2, T=11, seed=0):
    torch.manual_seed(seed)
    model = DictRNN().double()
    x = torch.randn(bs, T, N_IN, dtype=torch.float64)
    y = torch.randn(bs, T, N_OUT, dtype=torch.float64)
    return model, x, y




def collect(model, steps, opt=None):
    out = []
    for step in steps:
        out.append((grads(model), step.loss, step.state))
        if opt is not None:
            opt.step()
        model.zero_grad()
    return out


def assert_close(a, b, tol=1e-10):
    a, b = state_leaves(a), state_leaves(b)
    assert len(a) == len(b)
    for u, v in zip(a, b):
        assert (u is None) == (v is None)
        if u is not None:
            assert u.dtype == v.dtype and (u - v).abs().max().item() <= tol


def assert_same_updates(got, expected):
    assert len(got) == len(expected)
    for (g, loss, state), (g_ref, loss_ref, state_ref) in zip(got, expected):
        assert_close(g, g_ref)
        assert_close(loss, loss_ref)
        assert_close(state, state_ref)


# k1 = k2; k1 < k2 (k1 = 1, strides that divide k2 or not, a window longer than the
# stream); k2 < k1, also where the last short stride's window reaches into the previous one
CASES = [(4, 4, 11), (1, 4, 9), (2, 6, 11), (3, 5, 11), (5, 20, 11), (4, 2, 11), (4, 3, 10)]


@pytest.mark.parametrize("mode", ["stored", "recompute"])
@pytest.mark.parametrize("k1,k2,T", CASES)
def test_float_stream_with_a_dict_state_matches_brute_force(k1, k2, T, mode):
    model, x, y = make(T=T)
    expected = reference(model, x, y, k1, k2, loss_fn=mse)
    got = collect(model, truncated_bptt(model, x, y, k1, k2, loss_fn=mse, mode=mode))
    assert_same_updates(got, expected)
    assert int(got[-1][2]["step"]) == T and got[-1][2]["spare"] is None
    assert all(not t.requires_grad for t in state_leaves(got[-1][2]) if t is not None)


def test_time_on_another_dim():
    """(bs, features, T) with time_dim=2 trains exactly as (bs, T, features) with time_dim=1."""
    model, x, y = make(T=9)

    def channels_first(xc, state):
        out, state = model(xc.transpose(1, 2), state)
        return out.transpose(1, 2), state

    expected = collect(model, truncated_bptt(model, x, y, 2, 5, loss_fn=mse))
    got = collect(model, truncated_bptt(model, x.transpose(1, 2), y.transpose(1, 2), 2, 5, loss_fn=mse,
                                        forward=channels_first, time_dim=2))
    assert_same_updates(got, expected)


def split(T, lengths):
    """Cut range(T) into consecutive pieces of the given lengths (the last takes the rest)."""
    bounds, p = [], 0
    for n in lengths:
        if p + n >= T:
            break
        bounds.append((p, p + n))
        p += n
    return bounds + [(p, T)]


def feed_pieces(stream, model, x, y, lengths, opt=None):
    out = []
    for b, e in split(x.shape[1], lengths):
        out += collect(model, stream.feed(x[:, b:e], y[:, b:e]), opt)
    return out + collect(model, stream.flush(), opt)


@settings(max_examples=40, deadline=None)
@given(k1=st.integers(1, 5), k2=st.integers(1, 8), T1=st.integers(1, 16), T2=st.integers(1, 10),
       lengths=st.lists(st.integers(1, 7), min_size=1, max_size=12), mode=st.sampled_from(["stored", "recompute"]))
@example(k1=3, k2=5, T1=14, T2=7, lengths=[2, 2, 1, 4, 3], mode="stored")  # boundaries inside windows
@example(k1=4, k2=6, T1=10, T2=5, lengths=[9], mode="stored")  # ends inside a stride after a long piece
def test_pieces_equal_whole_across_a_reset(k1, k2, T1, T2, lengths, mode):
    """Two episodes fed in random pieces with a reset between them give the updates of one
    truncated_bptt call per episode, the second starting from the state given to reset."""
    model, x, y = make(T=T1 + T2, seed=k1 * 100 + k2)
    start_2 = {"gru": torch.randn(1, 2, 4, dtype=torch.float64), "lstm": None,
               "step": torch.tensor(100), "spare": None}
    expected = collect(model, truncated_bptt(model, x[:, :T1], y[:, :T1], k1, k2, loss_fn=mse, mode=mode))
    expected += collect(model, truncated_bptt(model, x[:, T1:], y[:, T1:], k1, k2, start_2, mse, mode))
    stream = TBPTTStream(model, k1, k2, mse, mode)
    got = feed_pieces(stream, model, x[:, :T1], y[:, :T1], lengths)
    stream.reset(start_2)
    got += feed_pieces(stream, model, x[:, T1:], y[:, T1:], lengths[::-1])
    assert_same_updates(got, expected)


@settings(max_examples=25, deadline=None)
@given(k1=st.integers(1, 4), k2=st.integers(1, 9), n_strides=st.integers(1, 5),
       lengths=st.lists(st.integers(1, 6), min_size=1, max_size=10))
def test_stored_pieces_equal_whole_while_the_optimiser_steps(k1, k2, n_strides, lengths):
    """Kept segments backpropagate with the weights that built them, whatever the pieces:
    on a stream of whole strides, pieces and one call agree while SGD steps in between."""
    model, x, y = make(T=k1 * n_strides, seed=k2)
    twin = copy.deepcopy(model)
    expected = collect(model, truncated_bptt(model, x, y, k1, k2, loss_fn=mse),
                       torch.optim.SGD(model.parameters(), lr=0.3))
    got = feed_pieces(TBPTTStream(twin, k1, k2, mse), twin, x, y, lengths,
                      torch.optim.SGD(twin.parameters(), lr=0.3))
    assert_same_updates(got, expected)


@pytest.mark.parametrize("mode", ["stored", "recompute"])
@pytest.mark.parametrize("cut", [1, 6, 9])
def test_a_checkpoint_continues_the_stream(tmp_path, mode, cut):
    """Save mid-stream through safetensors + JSON, load into a new stream: same updates."""
    model, x, y = make(T=17)
    lengths = [2, 3, 1, 4, 2, 5]
    expected = feed_pieces(TBPTTStream(model, 3, 5, mse, mode), model, x, y, lengths)
    stream = TBPTTStream(model, 3, 5, mse, mode)
    got = collect(model, stream.feed(x[:, :cut], y[:, :cut]))
    sd = stream.state_dict()
    tensors = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    save_file(tensors, tmp_path / "stream.safetensors")
    (tmp_path / "stream.json").write_text(json.dumps({k: v for k, v in sd.items() if k not in tensors}))
    restored = TBPTTStream(model, 3, 5, mse, mode)
    restored.load_state_dict(load_file(tmp_path / "stream.safetensors") | json.loads((tmp_path / "stream.json").read_text()))
    assert_close(restored.state, stream.state)
    got += feed_pieces(restored, model, x[:, cut:], y[:, cut:], [4, 1, 2])
    assert_same_updates(got, expected)


def test_state_is_the_state_after_the_last_step_fed():
    model, x, y = make(T=10)
    stream = TBPTTStream(model, 4, 6, mse)
    for b, e in split(10, [3, 1, 4, 2]):
        list(stream.feed(x[:, b:e], y[:, b:e]))
        assert_close(stream.state, state_at(model, x, e))
        model.zero_grad()


@pytest.mark.parametrize("k1,k2", [(1, 12), (4, 16), (16, 4)])
def test_what_a_long_stream_keeps_is_bounded(k1, k2):
    """Pieces of 1 to 7 steps over 200 steps: the inputs kept never exceed k1 + k2 + a piece,
    and the graphs kept never exceed k2 steps."""
    torch.manual_seed(0)
    model = DictRNN().double()
    stream = TBPTTStream(model, k1, k2, mse)
    kept_steps, kept_inputs = [], []
    for n in torch.randint(1, 8, (50,)).tolist():
        for _ in stream.feed(torch.randn(1, n, N_IN, dtype=torch.float64), torch.randn(1, n, N_OUT, dtype=torch.float64)):
            kept_steps.append(stream.kept[1])
            model.zero_grad()
        kept_inputs.append(stream.kept[0])
    assert max(kept_steps) < k2 and max(kept_inputs) <= k1 + k2 + 7


def test_history_slices_across_pieces():
    h = _History(time_dim=1, start=5)
    for n in (2, 1, 3):
        h.append(torch.arange(h.end, h.end + n)[None], -torch.arange(h.end, h.end + n)[None])
    x, y = h.slice(6, 10)
    assert x.tolist() == [[6, 7, 8, 9]] and y.tolist() == [[-6, -7, -8, -9]]
    h.trim(8)
    assert len(h.pieces) == 1 and h.slice(8, 11)[0].tolist() == [[8, 9, 10]]


def test_stream_refusals():
    model, x, y = make(T=10)
    stream = TBPTTStream(model, 4, 4, mse)
    list(stream.feed(x[:, :6], y[:, :6]))
    with pytest.raises(LooplmError, match="reset\\(\\) would drop the 2 steps fed since the last update"):
        stream.reset()
    with pytest.raises(LooplmError, match="a piece must continue the stream"):
        stream.feed(x[:1, 6:], y[:1, 6:])
    with pytest.raises(LooplmError, match="a piece must continue the stream"):
        stream.feed(x[:, 6:].float(), y[:, 6:])
    sd = stream.state_dict()
    with pytest.raises(LooplmError, match="the saved one \\(4, 4, 1\\): build the stream with the saved settings"):
        TBPTTStream(model, 4, 8, mse).load_state_dict(sd)
    list(stream.flush())
    stream.reset()  # nothing pending after a flush
