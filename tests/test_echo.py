"""The echo stream, and why k2 matters: an LSTM learns to echo a token d steps back
only when TBPTT backpropagates through more than d steps."""

import pytest
import torch
from torch import nn

from looplm.data.echo import echo_stream
from looplm.errors import LooplmError
from looplm.tbptt import truncated_bptt


def test_target_is_the_input_delay_steps_back():
    inputs, targets = echo_stream(1000, delay=3, vocab_sz=5, seed=7)
    assert inputs.shape == targets.shape == (1000,) and inputs.dtype == torch.int64
    assert torch.equal(targets[3:], inputs[:-3])
    assert set(inputs.tolist()) == set(range(5))


def test_worked_example_and_seeding():
    inputs, targets = echo_stream(6, delay=2, vocab_sz=8, seed=0)  # the module docstring's example
    assert inputs.tolist() == [5, 0, 3, 3, 3, 7]
    assert targets.tolist() == [4, 7, 5, 0, 3, 3]
    assert torch.equal(echo_stream(50, seed=1)[0], echo_stream(50, seed=1)[0])
    assert not torch.equal(echo_stream(50, seed=1)[0], echo_stream(50, seed=2)[0])


def test_tokens_are_uniform():
    inputs, _ = echo_stream(80_000, vocab_sz=8, seed=3)
    freq = torch.bincount(inputs, minlength=8).double() / inputs.numel()
    assert (freq - 1 / 8).abs().max() < 0.005


@pytest.mark.parametrize("kwargs", [dict(delay=0), dict(vocab_sz=1), dict(n_tokens=0)])
def test_refuses_bad_settings(kwargs):
    args = dict(n_tokens=10) | kwargs
    with pytest.raises(LooplmError, match=f"echo: {next(iter(kwargs))} must be an integer"):
        echo_stream(**args)


class EchoLSTM(nn.Module):
    def __init__(self, vocab_sz: int, n_hidden: int = 64):
        super().__init__()
        self.emb = nn.Embedding(vocab_sz, 16)
        self.rnn = nn.LSTM(16, n_hidden, batch_first=True)
        self.out = nn.Linear(n_hidden, vocab_sz)

    def forward(self, x, state=None):
        h, state = self.rnn(self.emb(x), state)  # (bs, T, n_hidden)
        return self.out(h), state  # (bs, T, vocab)


def train_and_score(k1: int, k2: int, delay: int = 3, vocab_sz: int = 8) -> float:
    """Accuracy on a fresh echo stream after 15 passes of TBPTT(k1, k2) over 32 x 400 tokens."""
    torch.manual_seed(0)
    model = EchoLSTM(vocab_sz)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    inputs, targets = (t.view(32, 400) for t in echo_stream(32 * 400, delay, vocab_sz, seed=1))
    for _ in range(15):
        for _ in truncated_bptt(model, inputs, targets, k1, k2):
            opt.step()
            opt.zero_grad()
    inputs, targets = (t.view(4, 500) for t in echo_stream(4 * 500, delay, vocab_sz, seed=2))
    with torch.no_grad():
        logits, _ = model(inputs)
    return (logits.argmax(-1) == targets)[:, delay:].double().mean().item()


@pytest.mark.slow
def test_k2_beyond_the_delay_learns_the_echo():
    """Delay 3, chance 1/8, the same k1 = 4. With k2 = 3 the window's entering state
    may hold the echoed token (by the chance of the initial weights) and the gradient
    can teach keeping it, never storing it: 0.14 to 0.27 over seeds, 0.27 with this one."""
    assert train_and_score(k1=4, k2=8) >= 0.99
    assert train_and_score(k1=4, k2=3) < 0.35
