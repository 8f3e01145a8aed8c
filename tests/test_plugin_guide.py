"""docs/plugins.md keeps step with the code: every hook with its exact signature and a test of
its own, every environment variable and testing helper, and sample plugins that work (the
minimal loss plugin, the lazily registered extractor, the command) and import no torch."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

import nstkit.testing
from nstkit import hookspecs
from nstkit.errors import PluginError, RecipeError
from nstkit.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "plugins.md"
BRIGHTNESS = ("pyproject.toml", "nstkit_brightness/__init__.py", "nstkit_brightness/plugin.py",
              "nstkit_brightness/loss.py", "tests/test_brightness.py")
SAMPLES = (*BRIGHTNESS, "nstkit_alexnet/plugin.py", "nstkit_stats.py")
SAMPLE_MODULES = ("nstkit_brightness", "nstkit_alexnet", "nstkit_stats", "test_brightness")
RECIPE = """\
version: 1
extractor: {name: alexnet}
losses:
  - {name: content, weight: 1.0, layers: [relu4]}
  - {name: gram, weight: 0.001, layers: [relu1, relu2, relu3]}
  - {name: brightness, weight: 10.0, target: 0.3}
"""


def _guide() -> str:
    return GUIDE.read_text(encoding="utf-8")


def _annotation(annotation: object) -> str:
    return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)


def hook_signature(name: str) -> str:
    """``def name(arg: Type, ...) -> Ret:`` as written in hookspecs.py (annotations unquoted)."""
    signature = inspect.signature(getattr(hookspecs, name))
    params = []
    for p in signature.parameters.values():
        text = f"{p.name}: {_annotation(p.annotation)}"
        params.append(text if p.default is p.empty else f"{text} = {p.default!r}")
    return f"def {name}({', '.join(params)}) -> {_annotation(signature.return_annotation)}:"


def _sections(text: str, level: str = "### ") -> dict[str, str]:
    """Heading (without backticks) -> the text up to the next heading of any level."""
    out: dict[str, str] = {}
    for block in re.split(r"^(?=#{2,3} )", text, flags=re.MULTILINE):
        if block.startswith(level):
            heading, _, body = block.partition("\n")
            out[heading[len(level):].strip().strip("`")] = body
    return out


def _code_blocks(text: str) -> dict[str, str]:
    """Fenced code blocks whose first line is a ``# <file name>`` comment, by that name."""
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    return {b.splitlines()[0][2:].strip(): b for b in blocks if b.startswith("# ")}


def test_signature_helper_reads_the_hookspec() -> None:
    assert hook_signature("on_job_start") == "def on_job_start(job: JobInfo) -> None:"


@pytest.mark.parametrize("name", hookspecs.HOOK_NAMES)
def test_every_hook_is_documented_with_its_exact_signature(name: str) -> None:
    sections = _sections(_guide())
    assert name in sections, f"docs/plugins.md has no '### `{name}`' section"
    body = sections[name]
    assert hook_signature(name) in body, (
        f"the section of {name} must show its signature exactly: {hook_signature(name)}")
    assert "Called" in body, f"the section of {name} must say when it is called"


def test_the_guide_documents_no_hook_that_does_not_exist() -> None:
    hooks_part = _guide().split("## The hooks", 1)[1].split("\n## ", 1)[0]
    assert set(_sections(hooks_part)) == set(hookspecs.HOOK_NAMES)


def test_every_hook_has_a_test_of_its_own() -> None:
    names = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names |= {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    missing = [f"test_hook_{hook}" for hook in hookspecs.HOOK_NAMES
               if f"test_hook_{hook}" not in names]
    assert not missing, f"hooks without a test of their own in tests/: {missing}"


def test_every_plugin_environment_variable_is_documented() -> None:
    source = (ROOT / "nstkit" / "plugins.py").read_text(encoding="utf-8")
    variables = set(re.findall(r"NSTKIT_[A-Z_]+", source))
    assert variables >= {"NSTKIT_DISABLE_PLUGIN_AUTOLOAD", "NSTKIT_PLUGINS",
                         "NSTKIT_BLOCK_PLUGINS", "NSTKIT_TRACE_HOOKS"}
    undocumented = sorted(v for v in variables if f"`{v}" not in _guide())
    assert not undocumented


def test_every_testing_helper_is_documented() -> None:
    undocumented = [name for name in nstkit.testing.__all__ if f"`{name}" not in _guide()]
    assert not undocumented


@pytest.fixture
def samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The guide's sample files written to ``tmp_path`` as a newcomer would copy them, and
    importable (``tmp_path`` and ``tmp_path/tests`` on ``sys.path``) for the test."""
    blocks = _code_blocks(_guide())
    for name in SAMPLES:
        assert name in blocks, f"docs/plugins.md lost its '# {name}' code block"
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(blocks[name], encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(tmp_path / "tests"))
    try:
        yield tmp_path
    finally:
        for name in [m for m in sys.modules if m.split(".")[0] in SAMPLE_MODULES]:
            del sys.modules[name]


def _sample_recipe(folder: Path, text: str = RECIPE, **replace: str) -> Path:
    for old, new in replace.items():
        text = text.replace(old, new)
    path = folder / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _sample_host() -> nstkit.plugins.PluginHost:
    """The built-ins and the guide's loss and extractor plugins."""
    return nstkit.testing.make_host(*map(importlib.import_module, (
        "nstkit_brightness.plugin", "nstkit_alexnet.plugin")))


def test_the_guides_minimal_plugin_works(samples: Path) -> None:
    """Run the guide's plugin tests and check its metadata."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((samples / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["entry-points"]["nstkit"] == {
        "brightness": "nstkit_brightness.plugin"}
    assert project["tool"]["setuptools"]["packages"] == ["nstkit_brightness"]
    module = importlib.import_module("test_brightness")
    tests = [fn for name, fn in vars(module).items() if name.startswith("test_")]
    assert len(tests) == 3
    for test in tests:
        test()


def test_the_guides_samples_check_recipes_with_the_messages_it_shows(samples: Path) -> None:
    """Recipes using the guide's loss and extractor are checked without building either (the
    extractor's network, ``nstkit_alexnet.model``, does not even exist)."""
    host = _sample_host()
    recipe = load_recipe(_sample_recipe(samples), host=host)
    assert recipe.config.losses[2].options == {"target": 0.3}
    assert recipe.config.extractor.name == "alexnet"
    assert "nstkit_alexnet.model" not in sys.modules
    cases = {("target: 0.3", "target: 2"): "losses[2].target: must be <= 1, got 2",
             ("target: 0.3", "layers: [relu1]"): "losses[2].layers: this term reads the image",
             ("[relu4]", "[relu6]"): "losses[0].layers[0]: unknown layer 'relu6' for alexnet. "
                                     "Did you mean 'relu5'? Valid layers: conv1, relu1, ",
             ("alexnet}", "alexnet, weights: original}"): "extractor.weights: must be"}
    for (old, new), message in cases.items():
        with pytest.raises(RecipeError) as caught:
            load_recipe(_sample_recipe(samples, **{old: new}), host=host)
        assert any(message in problem for problem in caught.value.problems), caught.value


def test_the_guides_extractor_factory_is_imported_when_first_built(samples: Path) -> None:
    entry = _sample_host().extractors.entry("alexnet")
    assert entry.layers is importlib.import_module("nstkit_alexnet.plugin").TABLE
    message = "'alexnet': cannot import nstkit_alexnet.model:AlexNetExtractor: Module"
    with pytest.raises(PluginError, match=re.escape(message)):
        entry.factory  # noqa: B018


@pytest.mark.slow
def test_the_guides_samples_import_no_torch(samples: Path) -> None:
    """What nstkit does at start-up with the guide's plugins, in a fresh interpreter."""
    code = f"""\
import sys
sys.path[:0] = [{str(samples)!r}]
import nstkit_alexnet.plugin, nstkit_brightness.plugin, nstkit_stats
import typer
from nstkit.plugins import PluginHost
from nstkit.recipe import load_recipe
plugins = [nstkit_alexnet.plugin, nstkit_brightness.plugin, nstkit_stats]
host = PluginHost(plugins=plugins, autoload=False)
host.register_commands(typer.Typer())
load_recipe({str(_sample_recipe(samples))!r}, host=host)
print(sorted(m for m in ("torch", "nstkit_brightness.loss") if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def _app_with(*names: str) -> typer.Typer:
    """A typer app with a command of each name, printing its name."""
    app = typer.Typer()
    for name in names:
        app.command(name)(lambda name=name: typer.echo(f"core {name}"))
    return app


def test_hook_register_commands(samples: Path) -> None:
    """The guide's command plugin, through ``PluginHost.register_commands`` as the CLI calls
    it: its command runs; a name already taken is ignored and reported for the plugin."""
    stats = importlib.import_module("nstkit_stats")
    image = samples / "grey.png"
    Image.new("RGB", (16, 8), (51, 51, 51)).save(image)
    host, app = nstkit.testing.make_host(stats), _app_with("run")
    host.register_commands(app)
    result = CliRunner().invoke(app, ["image-stats", str(image)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "16x8, mean brightness 0.200"
    assert "nstkit_stats" not in host.load_failures

    host, app = nstkit.testing.make_host(stats), _app_with("run", "image-stats")
    with pytest.warns(RuntimeWarning, match="image-stats already taken"):
        host.register_commands(app)
    assert CliRunner().invoke(app, ["image-stats"]).output.strip() == "core image-stats"
    assert "image-stats already taken; ignored" in host.load_failures["nstkit_stats"]
