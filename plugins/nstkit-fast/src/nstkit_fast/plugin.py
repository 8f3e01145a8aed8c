"""The nstkit hook implementations: the commands ``nstkit train`` and ``nstkit apply``, and
model files as ``nstkit compare`` variants.

nstkit imports this module at start-up (every command, ``nstkit --help`` included), so it
imports no torch: the commands and the compare variant import what they need when they run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from nstkit import hookimpl

if TYPE_CHECKING:
    from nstkit.recipe import Recipe
    from nstkit_fast.compare import ModelExecutor

SUFFIX = ".safetensors"
"""How a model file's name ends (what ``compare_variant`` claims)."""


@hookimpl
def register_commands(cli: typer.Typer) -> None:
    """Add ``nstkit train`` and ``nstkit apply`` to the command line."""
    from nstkit_fast.cli import apply, train

    cli.command()(train)
    cli.command()(apply)


@hookimpl
def compare_variant(ref: str, sets: list[str]) -> tuple[Recipe, ModelExecutor] | None:
    """A model file (``*.safetensors``) as a variant made by the network; other arguments are
    left to the recipe loader."""
    if not ref.endswith(SUFFIX):
        return None
    from nstkit_fast.compare import model_variant

    return model_variant(ref, sets)
