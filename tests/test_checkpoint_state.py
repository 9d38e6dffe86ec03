"""A checkpoint gives back the carried state whatever its structure (None, a tensor, a tuple,
a dict with None leaves): the structure goes to trainer.json, the tensors to safetensors."""

import json
import tempfile
from pathlib import Path

import pytest

import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file
from torch import nn

from looplm.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from looplm.errors import LooplmError
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


@settings(max_examples=25, deadline=None)
@given(state=STATES, pick=st.integers(0, 99))
def test_a_checkpoint_missing_any_state_tensor_is_refused(state, pick):
    """A missing tensor must not come back as a None leaf (a silently restarted part of the state)."""
    tensor_keys = [f"state.{i}" for i, t in enumerate(state_leaves(state)) if t is not None]
    assume(tensor_keys)
    model = nn.Linear(2, 2)
    snap = TrainerSnapshot(epoch=0, batch=3, train_iter=3, history=[], loss_sum=1.5, state=state,
                           optimizer=torch.optim.AdamW(model.parameters()).state_dict(), rng=torch.get_rng_state())
    with tempfile.TemporaryDirectory() as run_dir:
        path = Path(save_checkpoint(run_dir, model, snap)) / "trainer.safetensors"
        tensors = load_file(str(path))
        gone = tensor_keys[pick % len(tensor_keys)]
        del tensors[gone]
        save_file(tensors, str(path))
        with pytest.raises(LooplmError, match=f"{gone} of the state is missing"):
            load_checkpoint(run_dir, nn.Linear(2, 2))


def test_a_checkpoint_from_before_none_leaves_were_recorded_still_loads(tmp_path):
    model = nn.Linear(2, 2)
    h = torch.randn(1, 2, 3)
    snap = TrainerSnapshot(epoch=0, batch=1, train_iter=1, history=[], loss_sum=0.5, state=(h, None),
                           optimizer=torch.optim.AdamW(model.parameters()).state_dict(), rng=torch.get_rng_state())
    save_checkpoint(tmp_path, model, snap)
    meta_path = latest_checkpoint(tmp_path) / "trainer.json"
    meta = json.loads(meta_path.read_text())
    del meta["state_none"]
    meta_path.write_text(json.dumps(meta))
    back = load_checkpoint(tmp_path, nn.Linear(2, 2)).state
    assert torch.equal(back[0], h) and back[1] is None
