"""``nstkit stylize``: one content image, one or more style images, one output file."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nstkit.cli.common import console, err, fail, host, load
from nstkit.cli.options import Device, Iterations, Seed, Sets, Size, Strength, overrides
from nstkit.errors import NstkitError
from nstkit.recommended import RECOMMENDED

if TYPE_CHECKING:
    from nstkit.recipe import Recipe

# the options of this command that are config keys of the default layout (content term
# first, style term second, as in the gatys recipe), beyond the shared ones
KEYS = {"extractor": "extractor.name", "pooling": "extractor.pooling",
        "weights": "extractor.weights", "optimizer": "optimizer.name",
        "content_weight": "losses.0.weight", "style_weight": "losses.1.weight",
        "init": "init", "preserve_colour": "preserve_colour"}


def register(app: typer.Typer) -> None:
    app.command()(stylize)


def stylize(
    content: Annotated[Path, typer.Argument(help="Content image.")],
    style: Annotated[list[Path], typer.Argument(help="One or more style images.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output image file.")],
    recipe: Annotated[str, typer.Option(help="Recipe to start from.")] = RECOMMENDED,
    size: Size = None,
    iterations: Iterations = None,
    seed: Seed = None,
    strength: Strength = None,
    device: Device = "auto",
    sets: Sets = None,
    extractor: Annotated[str | None, typer.Option(help="Registered extractor name.")] = None,
    pooling: Annotated[str | None, typer.Option(help="max | avg")] = None,
    weights: Annotated[str | None, typer.Option(
        help="original | torchvision | random | path to a .pth")] = None,
    optimizer: Annotated[str | None, typer.Option(help="Registered optimiser name.")] = None,
    content_weight: Annotated[float | None, typer.Option(help="losses.0.weight")] = None,
    style_weight: Annotated[float | None, typer.Option(help="losses.1.weight")] = None,
    tv_weight: Annotated[float, typer.Option(help="Add a total-variation term.")] = 0.0,
    init: Annotated[str | None, typer.Option(help="content | noise | style | image path")]
    = None,
    preserve_colour: Annotated[str | None, typer.Option(
        help="luminance | linear | histogram")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Stylise one CONTENT image with STYLE image(s) and write the result to --out.

    Every option is an override of a key of --recipe (default: the recommended recipe);
    --content-weight and --style-weight are the weights of its first and second loss terms.
    """
    named = {"extractor": extractor, "pooling": pooling, "weights": weights,
             "optimizer": optimizer, "content_weight": content_weight,
             "style_weight": style_weight, "init": init, "preserve_colour": preserve_colour}
    # strings quoted (JSON is YAML), so a file name such as "a #1.png" stays one string
    items = overrides([*(sets or []), *(f"{KEYS[key]}={json.dumps(value)}"
                                        for key, value in named.items() if value is not None)],
                      size=size, iterations=iterations, seed=seed, strength=strength)
    resolved = load(recipe, items)
    if tv_weight:  # appended after the recipe's own terms
        count = len(resolved.config.losses)
        resolved = load(recipe, [*items, f"losses.{count}={{name: tv, weight: {tv_weight}}}"])
    _run(content, style, out, resolved, device, quiet)


def _run(content: Path, style: list[Path], out: Path, recipe: Recipe, device: str,
         quiet: bool) -> None:
    import nstkit
    from nstkit.image import print_info
    from nstkit.progress import ProgressDisplay

    # the recipe's output keys that fit --out's format; the content's ICC profile and dpi
    output, suffix = recipe.config.output, out.suffix.lower()
    if output.bit_depth == 16 and suffix not in (".png", ".tif", ".tiff"):
        fail(ValueError(f"--out {out.name}: output.bit_depth 16 needs a .png, .tif or .tiff "
                        f"file (jpg and webp are 8-bit)"))
    options = {"bit_depth": output.bit_depth}
    if suffix in (".jpg", ".jpeg", ".webp"):
        options["quality"] = output.quality
    plugins = host()
    display = contextlib.nullcontext() if quiet else plugins.added(ProgressDisplay(err),
                                                                   name="nstkit.progress")
    try:
        with display:
            result = nstkit.stylize(content, style, recipe.config, device=device,
                                    host=plugins, job_name=out.name)
        result.save(out, **options, **print_info(content).options())
    except (NstkitError, ValueError, OSError) as exc:
        fail(exc)
    total = result.history["total"]
    console.print(f"wrote {out} ({result.iterations} iterations, {result.wall_time:.1f} s on "
                  f"{result.device}; total loss {total[0]:.4g} -> {total[-1]:.4g})")
