"""What every command module shares: consoles, error exits, recipe loading, output folders.

Imports no torch: commands that compute import it inside.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from nstkit.errors import NstkitError, RecipeError

if TYPE_CHECKING:
    from nstkit.plugins import PluginHost
    from nstkit.recipe import Recipe

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def fail(error: Exception) -> NoReturn:
    """Print ``error`` (every problem of a recipe, one per line) and exit with code 2;
    ``NSTKIT_DEBUG=1`` raises it instead, with its traceback."""
    if os.environ.get("NSTKIT_DEBUG"):
        raise error
    if isinstance(error, RecipeError):
        count = len(error.problems)
        err.print(f"[red]error:[/red] invalid recipe ({count} problem{'s' * (count > 1)}):",
                  highlight=False)
        for problem in error.problems:
            err.print(f"  {problem}", highlight=False, markup=False)
    else:
        err.print(f"[red]error:[/red] {escape(str(error))}", highlight=False)
    raise typer.Exit(2) from None


@contextmanager
def run_errors(out: Path) -> Iterator[None]:
    """The end of a batch command's run (running its jobs, writing its summary) as the user
    sees it go wrong: Ctrl-C exits 130; an :class:`~nstkit.errors.NstkitError` goes to
    :func:`fail` (exit 2); an ``OSError`` (the output folder itself failed: disk full,
    removed, read-only) prints ``error: writing to OUT failed: ...`` and exits 1::

        with run_errors(options.out):
            summary = executor.run(request)
            write_summary(options.out, summary, skipped)

    Args:
        out: the output folder, named in the ``OSError`` message.
    """
    try:
        yield
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except NstkitError as exc:
        fail(exc)
    except OSError as exc:
        err.print(f"[red]error:[/red] writing to {escape(str(out))} failed: "
                  f"{escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None


def load(recipe: str, sets: list[str]) -> Recipe:
    """The recipe with ``--set`` items applied, or exit 2 with every problem."""
    from nstkit.recipe import load_recipe

    try:
        return load_recipe(recipe, sets)
    except NstkitError as exc:
        fail(exc)


def host() -> PluginHost:
    """The process-wide plugin host (exit 2 if plugins cannot be loaded)."""
    from nstkit.plugins import get_host

    try:
        return get_host()
    except NstkitError as exc:
        fail(exc)


def check_device(device: str, engine: str = "local") -> None:
    """Exit 2 unless ``--device`` names a device this machine (or, for a cluster engine,
    each worker) has."""
    if device in ("auto", "cpu"):
        return
    if engine != "local":  # the workers' GPUs, not this machine's
        if device != "cuda":
            fail(NstkitError(f"--device with --engine {engine} must be auto, cpu or cuda "
                             f"(each worker uses the GPU it is given), got {device!r}"))
        return
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError:
        dev = None
    if dev is None or dev.type != "cuda":
        fail(NstkitError(f"--device must be auto, cpu, cuda or cuda:N; got {device!r}"))
    if not torch.cuda.is_available():
        fail(NstkitError(f"--device {device}: CUDA is not available on this machine "
                         f"(use --device cpu or auto)"))
    if (dev.index or 0) >= torch.cuda.device_count():
        fail(NstkitError(f"--device {device}: only {torch.cuda.device_count()} CUDA "
                         f"device(s) here"))


def prepare_out(out: Path) -> None:
    """Create ``--out`` and check it is a writable folder, or exit 2."""
    if out.exists() and not out.is_dir():
        fail(NstkitError(f"--out {str(out)!r} exists and is not a folder"))
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".nstkit-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        fail(NstkitError(f"--out {str(out)!r} is not writable: {exc.strerror or exc}"))


def load_extractor(recipe: Recipe, device: str) -> None:
    """Build the recipe's extractor (cached for the run): a missing, corrupt or unfitting
    weights file stops here, before anything is written to ``--out``."""
    from nstkit.components import build_extractor, resolve_device

    extractor = recipe.config.extractor
    try:
        build_extractor(host(), extractor.name, resolve_device(device), **extractor.options)
    except NstkitError as exc:
        fail(exc)
