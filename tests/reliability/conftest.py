"""Helpers of the reliability suite: run ``nstkit run`` fast, read what it recorded.

Every job here is tiny (32 px, 2 steps); images that must be bad are generated in
``tmp_path`` by the tests themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from nstkit.cli import app
from nstkit.runner.manifest import read_records

FAST = ("--size", "32", "--iterations", "2", "--quiet")


@pytest.fixture(scope="package", autouse=True)
def _one_thread() -> Iterator[None]:
    """One torch thread: these jobs are tiny, and two threads on two busy cores stall (a
    batch of 17 jobs took 28 s with two, 4.5 s with one, while other work ran)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def invoke(*args: object):
    """``nstkit ARGS`` in-process; the result has ``exit_code`` and ``output``."""
    return CliRunner().invoke(app, [str(a) for a in args])


def run(content: Path, style: Path, out: Path, *extra: object, recipe: str = "gatys"):
    """``nstkit run RECIPE --content CONTENT --style STYLE --out OUT`` at test speed."""
    return invoke("run", recipe, "--content", content, "--style", style, "--out", out,
                  *FAST, *extra)


def records(out: Path) -> list[dict]:
    """Every record of ``OUT/manifest.jsonl``, in order (a line torn by a kill skipped)."""
    return list(read_records(out)) if out.is_dir() else []


def by_content(out: Path) -> dict[str, dict]:
    """The last record of each job, keyed by the content file's name."""
    return {Path(r["content"]["path"]).name: r for r in records(out)}
