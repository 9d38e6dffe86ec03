"""A checkpoint gives back the carried state whatever its structure (None, a tensor, a tuple,
a dict with None leaves): the structure goes to trainer.json, the tensors to safetensors."""

import tempfile

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from looplm.checkpoint import load_checkpoint, save_checkpoint
from looplm.learner import TrainerSnapshot
from looplm.state import state_leaves

TENSORS = st.builds(lambda n, seed: torch.randn(1, n, 3, generator=torch.Generator().manual_seed(seed)),
                    st.integers(1, 4), st.integers(0, 99))
STATES = st.recursive(st.none() | TENSORS,
                      lambda inner: st.tuples(inner, inner) | st.dictionaries(st.sampled_from("hcx"), inner,
                                                                             min_size=1),
                      max_leaves=5)


@settings(max_examples=25, deadline=None)
@given(state=STATES)
def test_the_carried_state_comes_back_with_its_structure(state):
    model = nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    snap = TrainerSnapshot(epoch=0, batch=3, train_iter=3, history=[], loss_sum=1.5, state=state,
                           optimizer=opt.state_dict(), rng=torch.get_rng_state())
    with tempfile.TemporaryDirectory() as run_dir:
        save_checkpoint(run_dir, model, snap)
        back = load_checkpoint(run_dir, nn.Linear(2, 2)).state
    assert type(back) is type(state)
    got, want = state_leaves(back), state_leaves(state)
    assert len(got) == len(want)
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(got, want))
