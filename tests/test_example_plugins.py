"""The example plugins of plugins/ used from recipes through ``nstkit run`` (when installed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nstkit.cli import app
from nstkit.plugins import reset_host

runner = CliRunner()


@pytest.fixture
def installed_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Load the example plugins from their entry points, as a user's install would."""
    pytest.importorskip("nstkit_mrf", reason="pip install -e plugins/nstkit-mrf")
    pytest.importorskip("nstkit_scipy", reason="pip install -e plugins/nstkit-scipy")
    monkeypatch.delenv("NSTKIT_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.setenv("NSTKIT_PLUGINS", "mrf,scipy")
    reset_host()


def _run(tiny: Path, out: Path, recipe: str, *extra: str) -> dict:
    result = runner.invoke(app, ["run", recipe, "--content", str(tiny / "content" /
                                                                  "chelsea.png"),
                                 "--style", str(tiny / "style" / "starry_night.png"),
                                 "--out", str(out), "--size", "48", "-q", *extra])
    assert result.exit_code == 0, result.output
    [line] = (out / "manifest.jsonl").read_text().splitlines()
    return json.loads(line)


@pytest.mark.slow
@pytest.mark.usefixtures("installed_plugins")
def test_a_recipe_with_the_mrf_loss_and_the_scipy_optimiser(tiny: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "mrf.yaml"
    recipe.write_text("""\
version: 1
extends: gatys
losses:
  - {name: content, weight: 1.0, layers: [relu4_2]}
  - {name: mrf, weight: 10.0, layers: [relu3_1]}
optimizer: {name: scipy-lbfgsb, iterations: 2, maxfun: 5}
""")
    record = _run(tiny, tmp_path / "out", str(recipe))
    assert set(record["losses"]) == {"content", "mrf", "total"}
    assert record["recipe_data"]["optimizer"]["name"] == "scipy-lbfgsb"


@pytest.mark.slow
@pytest.mark.usefixtures("installed_plugins")
def test_keras_tutorial_with_the_seeds_optimiser(tiny: Path, tmp_path: Path) -> None:
    record = _run(tiny, tmp_path / "out", "keras-tutorial", "--set",
                  "optimizer.name=scipy-lbfgsb", "--set", "optimizer.maxfun=15",
                  "--iterations", "2")
    assert record["status"] == "done"
    assert set(record["losses"]) == {"content", "gram", "tv", "total"}


@pytest.mark.usefixtures("installed_plugins")
def test_a_plugin_option_typo_is_caught_by_validation(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", "gatys", "--set", "optimizer.name=scipy-lbfgsb",
                                 "--set", "optimizer.maxfn=5"])
    assert result.exit_code == 2
    assert "optimizer.maxfn: unknown option for optimizer 'scipy-lbfgsb'. Did you mean " \
           "'maxfun'?" in result.output
