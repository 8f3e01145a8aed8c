"""The wheel carries every package and the built-in recipes (pyproject lists packages by hand)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from nstkit.recipe import builtin_recipes

ROOT = Path(__file__).resolve().parents[1]


def _source_packages() -> set[str]:
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "nstkit").rglob("__init__.py")}
    return found | {"nstkit.recipes"}


def test_pyproject_lists_every_package() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(config["packages"]) == _source_packages()
    assert config["package-dir"] == {"nstkit.recipes": "recipes"}


def test_builtin_recipes_are_the_files_in_recipes() -> None:
    assert set(builtin_recipes()) == {p.stem for p in (ROOT / "recipes").glob("*.yaml")}


@pytest.mark.slow
def test_the_wheel_contains_the_recipes(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", ".venv*", "__pycache__", "*.egg-info", "plugins", "out*"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist"), str(source)], check=True, timeout=300)
    [wheel] = (tmp_path / "dist").glob("nstkit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for recipe in builtin_recipes():
        assert f"nstkit/recipes/{recipe}.yaml" in names
    for package in _source_packages():
        assert f"{package.replace('.', '/')}/__init__.py" in names
