import pathlib

import pytest
import torch

# 2-core CI: one intra-op thread per test worker (pytest -n 2) avoids OpenMP oversubscription.
torch.set_num_threads(1)

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data():
    """Path to ../shared/data; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA
