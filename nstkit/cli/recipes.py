"""``nstkit recipes`` (list, ``show``, ``schema``) and ``nstkit validate``."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from nstkit.cli.common import console, fail, host, load
from nstkit.cli.options import RecipeRef, Sets
from nstkit.errors import NstkitError, RecipeError

recipes_app = typer.Typer(help="List built-in recipes, show one resolved, or print the schema.",
                          invoke_without_command=True)


def register(app: typer.Typer) -> None:
    app.add_typer(recipes_app, name="recipes")
    app.command()(validate)


@recipes_app.callback()
def recipes(ctx: typer.Context) -> None:
    """List the built-in recipes with their descriptions."""
    if ctx.invoked_subcommand is not None:
        return
    from nstkit.recipe import builtin_recipes, load_recipe

    table = Table("recipe", "description")
    for name in sorted(builtin_recipes()):
        try:
            table.add_row(name, load_recipe(name, host=host()).description)
        except NstkitError as exc:
            table.add_row(name, f"[red]invalid: {exc}[/red]")
    console.print(table)


@recipes_app.command("show")
def show(recipe: RecipeRef, sets: Sets = None) -> None:
    """Print RECIPE resolved (extends and --set applied, defaults filled in) as YAML."""
    resolved = load(recipe, sets or [])
    console.print(resolved.to_yaml(), highlight=False, markup=False, end="")


@recipes_app.command("schema")
def schema() -> None:
    """Print the JSON Schema of recipe files, with every installed plugin's components and
    options (for editors: `# yaml-language-server: $schema=nstkit-recipe.json`)."""
    from nstkit.config_schema import recipe_json_schema

    console.print(json.dumps(recipe_json_schema(host()), indent=2), highlight=False,
                  markup=False, soft_wrap=True)


def validate(
    recipes: Annotated[list[str], typer.Argument(help="Recipe names or YAML files.")],
    sets: Sets = None,
) -> None:
    """Check recipes; report every problem with its file and key path (exit code 2)."""
    from nstkit.recipe import load_recipe

    problems: list[str] = []
    for recipe in recipes:
        try:
            resolved = load_recipe(recipe, sets or [], host=host())
        except RecipeError as exc:
            problems += exc.problems
            continue
        console.print(f"{resolved.source}: ok ({resolved.name}, hash {resolved.hash[:12]})",
                      highlight=False)
    if problems:
        fail(RecipeError(problems))
