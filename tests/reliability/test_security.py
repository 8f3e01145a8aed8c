"""Nothing runs or is written that the user did not ask for.

Outputs stay inside ``--out``; YAML tags construct nothing; weight files run no code; plugins
come only from installed entry points or an explicit option, never from the current folder.
Each "would run code" payload here creates a marker file if it ever runs.
"""

from __future__ import annotations

import ast
import hashlib
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nstkit.plugins import PluginHost
from nstkit.runner.manifest import file_sha256

ROOT = Path(__file__).resolve().parents[2]


def tree_state(root: Path, skip: Path) -> dict[str, str]:
    """Every file under ``root`` but outside ``skip``: path -> sha256 (links: their target)."""
    state = {}
    for path in sorted(root.rglob("*")):
        if path.is_relative_to(skip):
            continue
        if path.is_symlink():
            state[str(path)] = f"-> {os.readlink(path)}"
        elif path.is_file():
            state[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


@pytest.mark.slow
def test_outputs_never_leave_the_output_folder(tiny: Path, tmp_path: Path, monkeypatch, run,
                                               records) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    source = tiny / "content" / "chelsea.png"
    for name in ("x.png", "-rf.png", "a\\..\\..\\b.png", " .png"):
        shutil.copy(source, inputs / name)
    (tmp_path / "dots").mkdir()
    shutil.copy(source, tmp_path / "dots" / "..png")  # hidden: an input only when named
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"must stay as it is")
    out = tmp_path / "out"
    out.mkdir()
    (out / "x__starry_night__gatys.png").symlink_to(victim)  # a trap at an output's name
    monkeypatch.chdir(deep)
    before = tree_state(tmp_path, out)
    result = run(Path("../../in"), tiny / "style" / "starry_night.png", Path("../../out"),
                 "--content", Path("../../dots/..png"), "--save-every", "1")
    assert result.exit_code == 0, result.output
    assert tree_state(tmp_path, out) == before  # victim included: the link was replaced
    outputs = [r["output"] for r in records(out)]
    assert len(outputs) == 5
    for name in outputs:
        target = out / name
        assert target.parent == out
        assert not target.is_symlink()
        assert file_sha256(target) == next(r for r in records(out)
                                           if r["output"] == name)["output_sha256"]
    steps = [p for p in (out / "steps").rglob("*") if p.is_file()]
    assert len(steps) == 10
    assert all(p.resolve().is_relative_to(out.resolve()) for p in steps)


@pytest.mark.parametrize("override", [
    "name=../escape", "name=/tmp/absolute", "name=a/b", "output.format=../../x.png",
])
def test_a_recipe_cannot_name_an_output_outside(tiny: Path, tmp_path: Path, run,
                                                override: str) -> None:
    out = tmp_path / "out"
    result = run(tiny / "content", tiny / "style", out, "--set", override)
    assert result.exit_code == 2, result.output
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []


# --- YAML tags ---------------------------------------------------------------------------------

TAGS = [
    "!!python/object/apply:builtins.open ['{marker}', 'w']",
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/new:pathlib.Path ['{marker}']",
    "!!python/name:os.system",
    "!!python/module:os",
    "!custom {{a: 1}}",
]


@pytest.mark.parametrize("where", ["recipe", "parent recipe", "--set"])
@pytest.mark.parametrize("tag", TAGS)
def test_no_yaml_tag_constructs_anything(tiny: Path, tmp_path: Path, run, tag: str,
                                         where: str) -> None:
    marker = tmp_path / "MARKER"
    value = tag.format(marker=marker)
    recipe, extra = tmp_path / "r.yaml", []
    if where == "recipe":
        recipe.write_text(f"seed: {value}\n")
    elif where == "parent recipe":
        (tmp_path / "parent.yaml").write_text(f"--- {value}\n")
        recipe.write_text("extends: parent.yaml\n")
    else:
        recipe.write_text("extends: gatys\n")
        extra = ["--set", f"seed={value}"]
    result = run(tiny / "content", tiny / "style", tmp_path / "out", *extra, recipe=str(recipe))
    assert result.exit_code == 2, result.output
    assert re.search(r"could not determine a constructor for the tag|seed: must be an integer "
                     r"or null, got ['\"]!", result.output), result.output
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


# --- weights -----------------------------------------------------------------------------------


class _OpensAFile:
    """Unpickled unsafely, this would create ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def _torch_file(path: Path, marker: Path) -> None:
    torch.save({"0.weight": torch.zeros(1), "payload": _OpensAFile(marker)}, path)


def _plain_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps({"0.weight": _OpensAFile(marker)}))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize(("make", "message"), [
    (_torch_file, "refused to load {path}: it holds pickled objects other than tensors "
                  "(GLOBAL io.open); nstkit loads weights with torch.load(weights_only=True) "
                  "and never runs such code"),
    (_plain_pickle, "cannot read weights file {path}: not a torch state dict (corrupt or "
                    "another format; nothing in it was run"),
])
def test_a_weights_file_cannot_run_code(tiny: Path, tmp_path: Path, run, make,
                                        message: str) -> None:
    marker, weights = tmp_path / "MARKER", tmp_path / "evil.pth"
    make(weights, marker)
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_OpensAFile(probe))).close()
    assert probe.exists()  # the payload is real: plain unpickling runs it
    result = run(tiny / "content", tiny / "style", tmp_path / "out", "--set",
                 f"extractor.weights={weights}")
    assert result.exit_code == 2, result.output
    assert message.format(path=weights) in " ".join(result.output.split())
    assert not marker.exists()


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    """``(callee as written, call)`` for every call in ``tree``."""
    return [(ast.unparse(node.func), node) for node in ast.walk(tree)
            if isinstance(node, ast.Call)]


def test_every_loader_in_the_code_is_a_safe_one() -> None:
    """No code path can unpickle or construct objects: checked on every module shipped."""
    files = [*(ROOT / "nstkit").rglob("*.py"), *(ROOT / "plugins").glob("*/src/**/*.py")]
    assert len(files) > 30
    loads = []
    for path in files:
        for name, call in _calls(ast.parse(path.read_text("utf-8"))):
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            keywords = {k.arg: ast.unparse(k.value) for k in call.keywords}
            assert name not in ("pickle.load", "pickle.loads", "yaml.unsafe_load",
                                "yaml.full_load", "eval", "exec", "torch.hub.load",
                                "marshal.loads"), where
            if name == "torch.load":
                assert keywords.get("weights_only") == "True", where
                loads.append(where)
            if name == "yaml.load":
                assert keywords.get("Loader") == "RecipeLoader", where
                loads.append(where)
    # weights.read_state_file and yamlio.parse: a new one is reviewed and added here
    assert sorted(where.split(":")[0] for where in loads) == [
        "nstkit/extractors/weights.py", "nstkit/recipe/yamlio.py"]


# --- plugins -----------------------------------------------------------------------------------


def _plant_plugin(folder: Path, marker: Path) -> None:
    """A distribution ``evil`` with an ``nstkit`` entry point whose import creates ``marker``."""
    info = folder / "evil-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[nstkit]\nevil = nstkit_evil\n")
    (folder / "nstkit_evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")


@pytest.mark.slow
def test_python_m_nstkit_never_loads_plugins_from_the_current_folder(tmp_path: Path) -> None:
    folder, marker = tmp_path / "photos", tmp_path / "MARKER"
    _plant_plugin(folder, marker)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NSTKIT_")}
    env["NSTKIT_PLUGINS"] = "evil"  # allowed by name, still not loaded from the folder
    done = subprocess.run([sys.executable, "-m", "nstkit", "plugins"], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "evil" not in done.stdout
    assert not marker.exists()


def test_the_same_plugin_installed_is_loaded(tmp_path: Path, monkeypatch) -> None:
    """The control: the check above can see a plugin being loaded."""
    folder, marker = tmp_path / "site-packages", tmp_path / "MARKER"
    _plant_plugin(folder, marker)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delenv("NSTKIT_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.setenv("NSTKIT_PLUGINS", "evil")
    host = PluginHost()
    assert host.pm.has_plugin("evil")
    assert marker.exists()
