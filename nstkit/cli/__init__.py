"""The ``nstkit`` command line (typer + rich): one module per group of commands.

Each command module imports :mod:`nstkit.cli.common` and :mod:`nstkit.cli.options`, never
another command module, and registers its commands through its ``register(app)``. Installed
plugins add theirs through the ``register_commands`` hook. Nothing here imports torch: the
commands that compute import it when they run.
"""

from __future__ import annotations

import os

import typer

from nstkit.cli import arrays, compare, info, recipes, run, stylize
from nstkit.samples import samples_dir

app = typer.Typer(help="Neural style transfer (Gatys et al.) with pluggable components.",
                  no_args_is_help=True, add_completion=False)
for module in (stylize, run, compare, recipes, info, arrays):
    module.register(app)


_with_plugins: list[typer.Typer] = []


def _plugin_commands() -> None:
    """Commands of installed plugins, added to :data:`app` once (none with
    ``NSTKIT_DISABLE_PLUGIN_AUTOLOAD``)."""
    if os.environ.get("NSTKIT_DISABLE_PLUGIN_AUTOLOAD") or app in _with_plugins:
        return
    _with_plugins.append(app)
    from nstkit.plugins import get_host

    get_host().register_commands(app)


def main() -> None:
    """The ``nstkit`` command: the core commands and the installed plugins'."""
    _plugin_commands()
    app()


__all__ = ["app", "main", "samples_dir"]
