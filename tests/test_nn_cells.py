"""The readable cells equal torch.nn's cells; both LSTM forms agree; the fast backward is exact."""

import pytest
import torch

from looplm.nn import GRUCell, LSTMCell, LSTMCellFourGates, RNNCell
from looplm.nn.fast import gru_recurrence, lstm_recurrence, rnn_recurrence

CELLS = {
    "rnn_tanh": (RNNCell, torch.nn.RNNCell, {"nonlinearity": "tanh"}),
    "rnn_relu": (RNNCell, torch.nn.RNNCell, {"nonlinearity": "relu"}),
    "gru": (GRUCell, torch.nn.GRUCell, {}),
    "lstm": (LSTMCell, torch.nn.LSTMCell, {}),
}


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", CELLS)
def test_cell_equals_torch_cell(kind, bias):
    torch.manual_seed(0)
    ours_cls, torch_cls, extra = CELLS[kind]
    theirs = torch_cls(5, 7, bias=bias, **extra).double()
    ours = ours_cls(5, 7, bias=bias, **extra).double()
    assert set(ours.state_dict()) == set(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    hx = torch.randn(3, 7, dtype=torch.float64)
    hx = (hx, torch.randn_like(hx)) if kind == "lstm" else hx
    results = []
    for cell in (ours, theirs):
        out = cell(x, hx)
        out = out if isinstance(out, tuple) else (out,)
        loss = sum((o * torch.arange(o.numel()).view_as(o).cos()).sum() for o in out)
        results.append((*out, *torch.autograd.grad(loss, [x, *cell.parameters()])))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    assert results[0][0].shape == (3, 7)


def test_four_gate_cell_from_fused_computes_the_same():
    torch.manual_seed(1)
    fused = LSTMCell(4, 6).double()
    four = LSTMCellFourGates.from_fused(fused)
    x = torch.randn(2, 4, dtype=torch.float64)
    state = (torch.randn(2, 6, dtype=torch.float64), torch.randn(2, 6, dtype=torch.float64))
    for a, b in zip(four(x, state), fused(x, state)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_four_gate_cell_to_fused_computes_the_same():
    torch.manual_seed(2)
    four = LSTMCellFourGates(3, 5).double()
    fused = four.to_fused()
    x = torch.randn(4, 3, dtype=torch.float64)
    state = (torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64))
    for a, b in zip(fused(x, state), four(x, state)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    # and back: the four gate layers come out as they went in
    again = LSTMCellFourGates.from_fused(fused)
    for a, b in zip(again.parameters(), four.parameters()):
        torch.testing.assert_close(a, b, atol=1e-15, rtol=0)


def test_four_gate_cell_runs_a_sequence_like_the_chapter():
    """The chapter's loop: h, c carried from step to step, one output per step."""
    torch.manual_seed(3)
    four = LSTMCellFourGates(2, 3)
    x = torch.randn(5, 4, 2)            # (T, bs, ni)
    state = (torch.zeros(4, 3), torch.zeros(4, 3))
    outs = []
    for x_t in x:
        state = four(x_t, state)
        outs.append(state[0])
    ref = torch.nn.LSTM(2, 3)
    fused = four.to_fused()
    ref.load_state_dict({"weight_ih_l0": fused.weight_ih, "weight_hh_l0": fused.weight_hh,
                         "bias_ih_l0": fused.bias_ih, "bias_hh_l0": fused.bias_hh})
    torch.testing.assert_close(torch.stack(outs), ref(x)[0], atol=1e-6, rtol=0)


def _inputs(n_gates, bs=3, sl=4, n_hid=5, extra=()):
    torch.manual_seed(4)
    shapes = [(sl, bs, n_gates * n_hid), (bs, n_hid), *extra, (n_gates * n_hid, n_hid)]
    return [torch.randn(s, dtype=torch.float64, requires_grad=True) for s in shapes]


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_backward_passes_gradcheck(nonlinearity):
    xp, h0, w = _inputs(1)
    assert torch.autograd.gradcheck(lambda *a: rnn_recurrence(*a, nonlinearity), (xp, h0, w))


def test_gru_backward_passes_gradcheck():
    xp, h0, w = _inputs(3)
    b = torch.randn(15, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gru_recurrence, (xp, h0, w, b))
    assert torch.autograd.gradcheck(gru_recurrence, (xp, h0, w))


@pytest.mark.parametrize("path", ["cxx", "python"])
@pytest.mark.parametrize("n_hid", [5, 20])     # 20: one full AVX512 register of float64 and a tail
def test_lstm_backward_passes_gradcheck(path, n_hid, recurrence_path):
    recurrence_path(path)
    xp, h0, c0, w = _inputs(4, n_hid=n_hid, extra=[(3, n_hid)])
    assert torch.autograd.gradcheck(lstm_recurrence, (xp, h0, c0, w))


def test_both_chapter_lstm_cells_give_the_same_gradients_when_weights_are_mapped():
    """Questionnaire item 29: the four-gate cell and the single-matmul + chunk cell compute the
    same thing, forward and backward (weight gradients mapped the way the weights are)."""
    torch.manual_seed(5)
    fused = LSTMCell(4, 6).double()
    four = LSTMCellFourGates.from_fused(fused)
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    h = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    c = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    grads = []
    for cell in (four, fused):
        h1, c1 = cell(x, (h, c))
        loss = (h1 * torch.linspace(-1, 1, 6)).sum() + (c1 ** 2).sum()
        grads.append(torch.autograd.grad(loss, [x, h, c, *cell.parameters()]))
    (gx4, gh4, gc4, *g_four), (gx, gh, gc, g_wih, g_whh, g_bih, g_bhh) = grads
    for a, b in ((gx4, gx), (gh4, gh), (gc4, gc)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    by_gate = dict(zip(("forget", "input", "cell", "output"), zip(g_four[0::2], g_four[1::2])))
    for k, name in enumerate(("input", "forget", "cell", "output")):  # the fused rows' order
        g_w, g_b = by_gate[name]
        rows = slice(6 * k, 6 * (k + 1))
        torch.testing.assert_close(g_w, torch.cat([g_whh[rows], g_wih[rows]], dim=1), atol=1e-12, rtol=0)
        torch.testing.assert_close(g_b, g_bih[rows], atol=1e-12, rtol=0)
        torch.testing.assert_close(g_b, g_bhh[rows], atol=1e-12, rtol=0)
