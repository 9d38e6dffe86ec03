import pytest
import torch

# Two cores are shared by pytest and torch; one intra-op thread keeps the
# small models fast and the run times stable.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same torch seed."""
    torch.manual_seed(0)
    yield
