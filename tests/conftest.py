from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from nstkit.plugins import PluginHost, reset_host

ROOT = Path(__file__).resolve().parents[1]
SHARED_IMAGES = Path(os.environ.get("NSTKIT_TEST_IMAGES", ROOT.parent / "shared" / "images"))

torch.set_num_threads(min(2, torch.get_num_threads()))


def _devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=_devices())
def device(request: pytest.FixtureRequest) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    return request.param


@pytest.fixture(autouse=True)
def _isolated_plugins(monkeypatch: pytest.MonkeyPatch):
    """Core tests never see plugins installed in the environment."""
    monkeypatch.setenv("NSTKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    reset_host()
    yield
    reset_host()


@pytest.fixture
def host() -> PluginHost:
    return PluginHost(autoload=False)


@pytest.fixture(scope="session")
def tiny() -> Path:
    """The 64x64 shared test images (``tiny/content/*.png``, ``tiny/style/*.png``)."""
    path = SHARED_IMAGES / "tiny"
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared test images missing at {path}")
        pytest.skip(f"shared test images not found at {path} (set NSTKIT_TEST_IMAGES)")
    return path
