"""Shared fixtures. Tests run on CPU, small and fast; real-data tests find the data through CXR_DATA."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

# One thread: the tests' tensors are tiny, and two threads on a shared 2-core machine wait on each other
# (measured 30-100x slower under load); override with CXR_TEST_THREADS.
torch.set_num_threads(int(os.environ.get("CXR_TEST_THREADS", "1")))

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # test helpers shared by test files (translation_helpers)


def data_root() -> Path:
    """The real data folder: $CXR_DATA, else ../shared/data beside the repository."""
    env = os.environ.get("CXR_DATA")
    # Absolute, so that tests may symlink into it from tmp_path (CI sets the relative ../shared/data).
    return (Path(env) if env else REPO.parent / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def real_data() -> Path:
    """Path to the real data pack; skips the test only when the folder is absent."""
    root = data_root()
    if not root.is_dir():
        pytest.skip(f"real data folder {root} is absent (set CXR_DATA)")
    return root


@pytest.fixture(scope="session", autouse=True)
def _dataset_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Decoded dataset caches of the session go to a temporary folder (subprocesses inherit it)."""
    if "CXR_CACHE" not in os.environ:
        os.environ["CXR_CACHE"] = str(tmp_path_factory.mktemp("cxr-cache"))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
