import os

import pytest
import torch

# Two cores are shared by pytest and torch; one intra-op thread keeps the
# small models fast and the run times stable.
torch.set_num_threads(1)


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
