"""docs/plugins.md keeps step with the code: every hook with its exact signature and a test of
its own, every environment variable and testing helper, and a minimal plugin that works."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
from pathlib import Path

import pytest

import nstkit.testing
from nstkit import hookspecs

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "plugins.md"


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


def test_the_guides_minimal_plugin_works(tmp_path, monkeypatch) -> None:
    """Copy the guide's files as a newcomer would, then run its tests and check its metadata."""
    tomllib = pytest.importorskip("tomllib")
    blocks = _code_blocks(_guide())
    for name in ("pyproject.toml", "nstkit_brightness.py", "tests/test_brightness.py"):
        assert name in blocks, f"docs/plugins.md lost its '# {name}' code block"
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(blocks[name], encoding="utf-8")
    project = tomllib.loads(blocks["pyproject.toml"])
    assert project["project"]["entry-points"]["nstkit"] == {"brightness": "nstkit_brightness"}
    assert project["tool"]["setuptools"]["py-modules"] == ["nstkit_brightness"]
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(tmp_path / "tests"))
    try:
        module = importlib.import_module("test_brightness")
        tests = [fn for name, fn in vars(module).items() if name.startswith("test_")]
        assert len(tests) == 2
        for test in tests:
            test()
    finally:
        for name in ("test_brightness", "nstkit_brightness"):
            sys.modules.pop(name, None)
