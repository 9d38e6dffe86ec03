"""map_state: the same structure out as in, whichever path (fast for looplm's own states) it takes."""

from collections import namedtuple

import pytest
import torch
import torch.utils._pytree as pytree

from looplm.state import detach_state, map_state

HC = namedtuple("HC", "h c")
t = torch.arange(6.0).reshape(1, 2, 3)
STATES = [None, t, (t, t + 1), [t, None], HC(t, t + 2), {"lstm": (t, t), "step": None}, (t, (t, t)), ()]


@pytest.mark.parametrize("state", STATES, ids=lambda s: type(s).__name__)
def test_map_state_keeps_the_structure_and_maps_every_tensor(state):
    out = map_state(state, lambda x: x * 2)
    want = pytree.tree_map(lambda x: None if x is None else x * 2, state)
    assert pytree.tree_structure(out) == pytree.tree_structure(want)
    assert all((a is None and b is None) or torch.equal(a, b)
               for a, b in zip(pytree.tree_leaves(out), pytree.tree_leaves(want)))


def test_detach_state_cuts_the_graph_of_an_lstm_state():
    h = torch.ones(2, 3, requires_grad=True) * 2
    out = detach_state((h, h + 1))
    assert type(out) is tuple and not any(x.requires_grad for x in out)


@pytest.mark.parametrize("state", [(t, 3), [t, "x"], 1.5])
def test_a_leaf_that_is_not_a_tensor_is_refused(state):
    with pytest.raises(TypeError, match="pytree of tensors"):
        map_state(state, lambda x: x)
