"""The ``nstkit`` command line (typer + rich)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nstkit.errors import NstkitError, RecipeError
from nstkit.plugins import PluginHost, get_host

app = typer.Typer(help="Neural style transfer (Gatys et al.) with pluggable components.",
                  no_args_is_help=True, add_completion=False)
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

Size = Annotated[int, typer.Option(help="Longest side of the result in pixels.")]
Iterations = Annotated[int, typer.Option(help="Optimiser steps.")]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")]


def samples_dir() -> Path:
    """The folder of sample images bundled with the package."""
    return Path(str(resources.files("nstkit") / "data" / "samples"))


def _fail(error: Exception) -> None:
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


def _host_with_progress(quiet: bool) -> PluginHost:
    from nstkit.progress import ProgressDisplay

    host = get_host()
    if not quiet and not host.pm.has_plugin("nstkit.progress"):
        host.add(ProgressDisplay(err), name="nstkit.progress")
    return host


@app.command()
def stylize(
    content: Annotated[Path, typer.Argument(help="Content image.")],
    style: Annotated[list[Path], typer.Argument(help="One or more style images.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output image file.")],
    size: Size = 512,
    iterations: Iterations = 500,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    device: Device = "auto",
    extractor: Annotated[str, typer.Option(help="Registered extractor name.")] = "vgg19",
    pooling: Annotated[str, typer.Option(help="max | avg")] = "max",
    weights: Annotated[str | None, typer.Option(help="original | torchvision | random | "
                                                "path to a .pth")] = None,
    optimizer: Annotated[str, typer.Option(help="Registered optimiser name.")] = "lbfgs",
    content_weight: Annotated[float, typer.Option()] = 1.0,
    style_weight: Annotated[float, typer.Option()] = 1e-3,
    tv_weight: Annotated[float, typer.Option()] = 0.0,
    init: Annotated[str, typer.Option(help="content | noise | style | image path")] = "content",
    preserve_colour: Annotated[str | None, typer.Option(
        help="luminance | linear | histogram")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Stylise one CONTENT image with STYLE image(s) and write the result to --out."""
    import nstkit

    try:
        result = nstkit.stylize(
            content, style, size=size, iterations=iterations, seed=seed, device=device,
            extractor=extractor, pooling=pooling, weights=weights, optimizer=optimizer,
            content_weight=content_weight, style_weight=style_weight, tv_weight=tv_weight,
            init=init, preserve_colour=preserve_colour, host=_host_with_progress(quiet),
            job_name=out.name,
        )
        result.save(out)
    except (NstkitError, ValueError, OSError) as exc:
        _fail(exc)
    total = result.history["total"]
    console.print(f"wrote {out} ({result.iterations} iterations, {result.wall_time:.1f} s on "
                  f"{result.device}; total loss {total[0]:.4g} -> {total[-1]:.4g})")


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("out"),
    recipe: Annotated[str, typer.Option(help="Recipe to run.")] = "preview",
    size: Annotated[int | None, typer.Option(help="Override the recipe's size.")] = None,
    iterations: Annotated[int | None, typer.Option(help="Override the iterations.")] = None,
    device: Device = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Run RECIPE (default: preview) over every bundled sample photo x bundled painting.

    The same as ``nstkit run preview --content SAMPLES/content --style SAMPLES/style``.
    """
    from nstkit.cli_run import run

    run(recipe, [samples_dir() / "content"], [samples_dir() / "style"], out, device=device,
        size=size, iterations=iterations, quiet=quiet)


@app.command()
def plugins() -> None:
    """List plugins, their distributions and what each registers."""
    table = Table("plugin", "distribution", "registers")
    try:
        infos = get_host().info()
    except NstkitError as exc:
        _fail(exc)
    for info in infos:
        dist = f"{info.distribution} {info.version}" if info.distribution else "(built-in)"
        what = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in info.components.items())
        table.add_row(info.name, dist, f"[red]failed: {info.error}[/red]" if info.error else what)
    console.print(table)


@app.command()
def layers(
    extractor: Annotated[str, typer.Argument(help="Registered extractor name.")] = "vgg19",
) -> None:
    """List the layer names an extractor accepts (and their aliases)."""
    try:
        built = get_host().extractors.get(extractor)(weights="random")
    except NstkitError as exc:
        _fail(exc)
    aliases = {canonical: alias for alias, canonical in built.aliases.items()}
    for name in built.layer_names:
        console.print(name + (f"  (alias: {aliases[name]})" if name in aliases else ""))


# they register their commands on app: compare (cli_compare); run, recipes, validate
# (cli_run); status, template (cli_scale)
from nstkit import cli_compare, cli_run, cli_scale  # noqa: E402

__all__ = ["app", "cli_compare", "cli_run", "cli_scale", "main"]


def main() -> None:
    app()
