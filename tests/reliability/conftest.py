"""Fixtures of the reliability suite: run ``nstkit run`` fast, read what it recorded.

Every job here is tiny (32 px, 2 steps: the root ``fast`` options); images that must be bad
are generated in ``tmp_path`` by the tests themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

from nstkit.runner.manifest import read_records

if TYPE_CHECKING:
    from click.testing import Result


@pytest.fixture(scope="package", autouse=True)
def _one_thread() -> Iterator[None]:
    """One torch thread: these jobs are tiny, and two threads on two busy cores stall (a
    batch of 17 jobs took 28 s with two, 4.5 s with one, while other work ran)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def run(invoke: Callable[..., Result], fast: tuple[str, ...]) -> Callable[..., Result]:
    """``run(content, style, out, *extra, recipe="gatys")``: ``nstkit run RECIPE --content
    CONTENT --style STYLE --out OUT`` in-process at test speed (the root ``invoke``, ``fast``)."""

    def run_recipe(content: Path, style: Path, out: Path, *extra: object,
                   recipe: str = "gatys") -> Result:
        return invoke("run", recipe, "--content", content, "--style", style, "--out", out,
                      *fast, *extra)

    return run_recipe


@pytest.fixture
def records() -> Callable[[Path], list[dict]]:
    """``records(out)``: every record of ``out/manifest.jsonl``, in order. Unlike the root
    fixture of this name, a line torn by a kill is skipped (``read_records``) and a missing
    ``out`` folder gives ``[]``: the fault tests rely on both."""

    def read(out: Path) -> list[dict]:
        return list(read_records(out)) if out.is_dir() else []

    return read


@pytest.fixture
def by_content(records: Callable[[Path], list[dict]]) -> Callable[[Path], dict[str, dict]]:
    """``by_content(out)``: the last record of each job, keyed by the content file's name."""

    def last(out: Path) -> dict[str, dict]:
        return {Path(r["content"]["path"]).name: r for r in records(out)}

    return last
