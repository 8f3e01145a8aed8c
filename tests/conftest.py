"""Fixtures of the whole suite: devices and dtypes, an isolated plugin host, the test images,
tiny plugins made from hook functions, and in-process ``nstkit`` commands at test speed."""

from __future__ import annotations

import json
import os
import types
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
from typer.testing import CliRunner

import nstkit
from nstkit.plugins import PluginHost, reset_host
from nstkit.testing import sample_images

if TYPE_CHECKING:
    from click.testing import Result

torch.set_num_threads(min(2, torch.get_num_threads()))

FAST_OPTIONS = ("--size", "32", "--iterations", "2", "--quiet")
TINY_IMAGES = ("content/chelsea.png", "content/coffee.png", "style/starry_night.png",
               "style/starry_night_gold.png")


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
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of small real test images: ``content/`` (``chelsea.png``, ``coffee.png``, 64 px
    wide by 43 high) and ``style/`` (``starry_night.png``, ``starry_night_gold.png``, 64 by
    50), written once per session by :func:`nstkit.testing.sample_images` from the images
    nstkit ships.

    With ``NSTKIT_TEST_IMAGES`` set, ``$NSTKIT_TEST_IMAGES/tiny`` is used instead: it must
    hold the same file names (the tests name them), and nothing else in those two folders.
    """
    if "NSTKIT_TEST_IMAGES" not in os.environ:
        return sample_images(tmp_path_factory.mktemp("tiny"))
    path = Path(os.environ["NSTKIT_TEST_IMAGES"]) / "tiny"
    missing = [name for name in TINY_IMAGES if not (path / name).is_file()]
    if missing:
        pytest.fail(f"NSTKIT_TEST_IMAGES is set, but {path} lacks {', '.join(missing)}")
    return path


@pytest.fixture
def make_plugin() -> Callable[..., types.SimpleNamespace]:
    """``make_plugin(hook_name=function, ...)``: a plugin object whose hooks are those
    functions (each wrapped in ``nstkit.hookimpl``), ready for ``PluginHost.add``."""

    def make(**hooks: Callable[..., object]) -> types.SimpleNamespace:
        return types.SimpleNamespace(**{name: nstkit.hookimpl(fn) for name, fn in hooks.items()})

    return make


@pytest.fixture
def fast() -> tuple[str, ...]:
    """``nstkit run`` options for a test-speed job: 32 px, 2 iterations, quiet."""
    return FAST_OPTIONS


@pytest.fixture
def invoke() -> Callable[..., Result]:
    """``invoke(*args)``: ``nstkit ARGS`` in-process (CliRunner; arguments made strings);
    the result has ``exit_code`` and ``output``."""
    from nstkit.cli import app  # here, not at the top: only the tests that run it need it

    runner = CliRunner()

    def run(*args: object) -> Result:
        return runner.invoke(app, [str(a) for a in args])

    return run


@pytest.fixture
def run_tiny(tiny: Path, invoke: Callable[..., Result]) -> Callable[..., Result]:
    """``run_tiny(out, *extra, recipe="gatys")``: ``nstkit run`` of every ``tiny`` content
    with every ``tiny`` style (4 jobs) into ``out`` at test speed."""

    def run(out: Path, *extra: object, recipe: str = "gatys") -> Result:
        return invoke("run", recipe, "--content", tiny / "content", "--style", tiny / "style",
                      "--out", out, *FAST_OPTIONS, *extra)

    return run


@pytest.fixture
def records() -> Callable[[Path], list[dict]]:
    """``records(out)``: every record of ``out/manifest.jsonl``, in order."""

    def read(out: Path) -> list[dict]:
        lines = (out / "manifest.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]

    return read
