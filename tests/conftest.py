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
