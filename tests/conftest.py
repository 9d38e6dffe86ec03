import os

import pytest
import torch
from torch import nn

# Two cores are shared by pytest and torch; one intra-op thread keeps the
# small models fast and the run times stable (a thread pool only adds contention).
torch.set_num_threads(1)


class TinyLM(nn.Module):
    """Embedding -> one recurrent layer (``cell``: nn.RNN, nn.GRU or nn.LSTM) -> Linear, following
    the looplm model protocol: ``forward(x (bs, T), state) -> (logits (bs, T, vocab), state)``,
    with ``return_activations`` also the layer's output (bs, T, n_hidden)."""

    def __init__(self, cell: type[nn.RNNBase] = nn.LSTM, vocab: int = 7, emb_sz: int = 5, n_hidden: int = 6):
        super().__init__()
        self.emb = nn.Embedding(vocab, emb_sz)
        self.rnn = cell(emb_sz, n_hidden, batch_first=True)
        self.out = nn.Linear(n_hidden, vocab)

    def forward(self, x, state=None, return_activations=False):
        h, state = self.rnn(self.emb(x), state)  # (bs, T, n_hidden)
        return (self.out(h), state, h) if return_activations else (self.out(h), state)


@pytest.fixture(autouse=True, scope="session")
def _token_cache(tmp_path_factory):
    """Text corpora are cached in a folder of the test session, never in ~/.cache/looplm
    (a test may still point LOOPLM_CACHE elsewhere with monkeypatch)."""
    before = os.environ.get("LOOPLM_CACHE")
    os.environ["LOOPLM_CACHE"] = str(tmp_path_factory.mktemp("looplm-cache"))
    yield
    if before is None:
        os.environ.pop("LOOPLM_CACHE", None)
    else:
        os.environ["LOOPLM_CACHE"] = before


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same torch seed."""
    torch.manual_seed(0)
    yield


def folder_state(root) -> dict:
    """Every entry under ``root``: its kind, permission bits and (files) bytes, (links) target.
    Two equal states mean nothing under ``root`` was created, changed or removed."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if os.path.islink(path):
                state[path] = ("link", os.readlink(path))
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    state[path] = ("file", st.st_mode, f.read())
            else:
                state[path] = ("other", st.st_mode)
    return state


@pytest.fixture
def snapshot():
    """``snapshot(folder)``: see :func:`folder_state`."""
    return folder_state


@pytest.fixture
def recurrence_path(monkeypatch):
    """``recurrence_path(name)``: the fast path's time loops run in C++ (``"cxx"``, built on
    first use; skipped where LOOPLM_NO_EXT turns it off) or in Python (``"python"``)."""
    from looplm.nn import native

    def choose(name: str) -> None:
        if name == "python":
            monkeypatch.setattr(native, "extension", lambda: None)
        elif name == "cxx":
            if os.environ.get(native.DISABLE, "") not in ("", "0"):
                pytest.skip(f"{native.DISABLE} is set")
            assert native.extension() is not None, "the C++ recurrences did not build"

    return choose
