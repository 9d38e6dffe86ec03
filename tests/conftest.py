import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same torch seed."""
    torch.manual_seed(0)
    yield
