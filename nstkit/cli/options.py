"""Command-line options shared by ``run``, ``compare`` and ``stylize`` (and the plugins'
commands, such as ``nstkit video`` and ``nstkit apply``), declared once.

Each option that changes the result is an override of one config key (:data:`CONFIG_KEYS`),
applied after the recipe's own ``set:`` and before nothing else but ``--set``'s order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

CONFIG_KEYS = {"size": "size", "iterations": "optimizer.iterations", "seed": "seed",
               "strength": "strength", "save_every": "output.save_every", "masks": "masks",
               "regions": "regions"}

RecipeRef = Annotated[str, typer.Argument(help="A built-in recipe name or a YAML file.")]
Content = Annotated[list[Path], typer.Option(help="Content image or folder (repeatable).")]
Style = Annotated[list[Path], typer.Option(help="Style image or folder (repeatable).")]
Out = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]
Recursive = Annotated[bool, typer.Option(help="Search folders recursively.")]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")]
Size = Annotated[int | None, typer.Option(
    help="Longest side of the result in pixels (overrides the recipe's size).")]
Iterations = Annotated[int | None, typer.Option(
    help="Optimiser steps (overrides the recipe's optimizer.iterations).")]
Seed = Annotated[int | None, typer.Option(help="Random seed (overrides the recipe's seed).")]
Strength = Annotated[float | None, typer.Option(
    help="How strongly the style shows: multiplies every style term's weight (1: the recipe "
         "as written, 2: twice the style, 0.5: half).")]
SaveEvery = Annotated[int | None, typer.Option(
    min=0, help="Save intermediate images every N steps under OUT/steps/.")]
Sets = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a recipe key: --set losses.1.weight=1e-2 (repeatable).")]
Masks = Annotated[Path | None, typer.Option(
    help="Folder of region masks: PHOTO_STEM.mask.png or PHOTO_STEM.png (else a mask is "
         "looked for beside each photo as PHOTO_STEM.mask.png); used with regions.")]


def _check_regions(items: list[str] | None) -> list[str] | None:
    for item in items or []:
        colour, sep, _ = item.partition("=")
        if not sep or not colour.strip():
            raise typer.BadParameter(f"expected COLOUR=STYLE (e.g. '#ff0000=great_wave.jpg'), "
                                     f"got {item!r}")
    return items


Regions = Annotated[list[str] | None, typer.Option(
    "--region", callback=_check_regions,
    help="Map a mask colour to a style: --region '#ff0000=great_wave.jpg', '#0000ff=null' "
         "keeps the content, '#00ff00=style' the job's --style (repeatable; overrides "
         "regions.COLOUR).")]
Overwrite = Annotated[bool, typer.Option(help="Redo jobs that are already done.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Plain one line per job.")]
Engine = Annotated[str, typer.Option(
    help="Where jobs run: local (this process) or ray (actors on a Ray cluster).")]
Address = Annotated[str | None, typer.Option(
    help="--engine ray: the cluster (auto, ray://HOST:10001); default: a local one.")]
DryRun = Annotated[bool, typer.Option(help="Print the planned jobs and stop.")]
Shard = Annotated[str | None, typer.Option(
    help="Run shard I of N (0-based), e.g. 0/4, for job arrays; auto: read I and N from "
         "SLURM, Kubernetes Indexed Job or torchrun variables.")]
FailFast = Annotated[bool, typer.Option(help="Stop at the first failed job.")]


def overrides(sets: list[str] | None, **options: object) -> list[str]:
    """``--set`` items followed by the named options given (``size=256`` ->
    ``"size=256"``, ``iterations=10`` -> ``"optimizer.iterations=10"``)."""
    named = []
    for key, value in options.items():
        if key == "regions":
            named += [region_override(item) for item in value or []]  # type: ignore[attr-defined]
        elif value is not None:
            named.append(f"{CONFIG_KEYS[key]}={value}")
    return [*(sets or []), *named]


def region_override(item: str) -> str:
    """``--region '#FF0000=great_wave.jpg'`` -> ``"regions.#ff0000=great_wave.jpg"``."""
    colour, _, style = item.partition("=")
    return f"regions.{colour.strip().lower()}={style.strip()}"


def shard_option(text: str | None) -> tuple[int, int] | None:
    """``--shard``'s value: ``None`` (no option) -> ``None``; ``"I/N"`` -> ``(I, N)``;
    ``"auto"`` -> ``(I, N)`` read from the job array's variables (SLURM, a Kubernetes Indexed
    Job, torchrun).

    Raises:
        NstkitError: ``text`` is not ``I/N`` with ``0 <= I < N``, or ``auto`` finds no (or
            inconsistent) job-array variables.
    """
    import os

    from nstkit.runner.arrays import shard_from_env
    from nstkit.runner.plan import parse_shard

    if not text:
        return None
    return shard_from_env(os.environ) if text.strip() == "auto" else parse_shard(text)
