"""looplm.nn.stacked: torch's LSTM and GRU, with the fast dropout mask between layers."""

import pytest
import torch
from torch import nn

from looplm.nn import stacked
from looplm.nn.dropout import dropout_mask

PAIRS = [(stacked.LSTM, nn.LSTM), (stacked.GRU, nn.GRU)]


def states(kind, h):
    return (h, h.clone()) if kind is stacked.LSTM else h


@pytest.mark.parametrize("ours_cls, torch_cls", PAIRS)
@pytest.mark.parametrize("batch_first", [True, False])
def test_without_dropout_it_is_torchs_module(ours_cls, torch_cls, batch_first):
    """Eval mode, p = 0 or one layer: the same numbers and state_dict as torch's module."""
    torch.manual_seed(0)
    ours = ours_cls(5, 7, 3, batch_first=batch_first, dropout=0.5)
    theirs = torch_cls(5, 7, 3, batch_first=batch_first, dropout=0.5)
    theirs.load_state_dict(ours.state_dict())
    x, h = torch.randn(4, 6, 5), states(ours_cls, torch.randn(3, 4 if batch_first else 6, 7))
    ours.eval(), theirs.eval()
    (a, sa), (b, sb) = ours(x, h), theirs(x, h)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    torch.testing.assert_close(sa, sb, atol=0, rtol=0)


@pytest.mark.parametrize("ours_cls, torch_cls", PAIRS)
def test_training_drops_between_layers_with_one_fresh_mask_each(ours_cls, torch_cls):
    """Training on CPU: layer k+1 reads layer k's output times dropout_mask, drawn in layer order,
    and the result (output, final states, gradients) is what one-layer torch modules give."""
    torch.manual_seed(0)
    ours = ours_cls(5, 7, 3, batch_first=True, dropout=0.4).train()
    singles = [torch_cls(5 if k == 0 else 7, 7, 1, batch_first=True) for k in range(3)]
    for k, single in enumerate(singles):
        single.load_state_dict({n.replace(f"_l{k}", "_l0"): p for n, p in ours.state_dict().items()
                                if n.endswith(f"_l{k}")})
    x = torch.randn(4, 6, 5, requires_grad=True)
    h = states(ours_cls, torch.randn(3, 4, 7))
    torch.manual_seed(7)
    out, state = ours(x, h)
    torch.manual_seed(7)
    y, finals = x, []
    for k, single in enumerate(singles):
        if k:
            y = y * dropout_mask(y, tuple(y.shape), 0.4)
        hk = tuple(s[k:k + 1] for s in h) if isinstance(h, tuple) else h[k:k + 1]
        y, s = single(y, hk)
        finals.append(s)
    torch.testing.assert_close(out, y)
    if isinstance(state, tuple):
        for i in range(2):
            torch.testing.assert_close(state[i], torch.cat([f[i] for f in finals]))
    else:
        torch.testing.assert_close(state, torch.cat(finals))
    (g_ours,) = torch.autograd.grad(out.sum(), x)
    (g_ref,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(g_ours, g_ref)


@pytest.mark.parametrize("ours_cls, torch_cls", PAIRS)
def test_a_wrong_state_is_refused_as_torch_refuses_it(ours_cls, torch_cls):
    ours = ours_cls(5, 7, 2, batch_first=True, dropout=0.3).train()
    x = torch.randn(4, 6, 5)
    bad = states(ours_cls, torch.zeros(2, 3, 7))          # batch 3, not 4
    with pytest.raises(RuntimeError, match="Expected hidden"):
        ours(x, bad)
