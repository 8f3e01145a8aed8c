"""``nstkit plugins`` and ``nstkit layers``: what is installed, and what it accepts."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from nstkit.cli.common import console, fail, host
from nstkit.errors import NstkitError


def register(app: typer.Typer) -> None:
    app.command()(plugins)
    app.command()(layers)


def plugins() -> None:
    """List plugins, their distributions and what each registers."""
    table = Table("plugin", "distribution", "registers")
    try:
        infos = host().info()
    except NstkitError as exc:
        fail(exc)
    for info in infos:
        dist = f"{info.distribution} {info.version}" if info.distribution else "(built-in)"
        what = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in info.components.items())
        if info.hooks and not what:
            what = "hooks: " + ", ".join(info.hooks)
        table.add_row(info.name, dist, f"[red]failed: {info.error}[/red]" if info.error else what)
    console.print(table)


def layers(
    extractor: Annotated[str, typer.Argument(help="Registered extractor name.")] = "vgg19",
) -> None:
    """List the layer names an extractor accepts (and their aliases)."""
    from nstkit.config_schema import layer_table

    try:
        host().extractors.entry(extractor)
        table = layer_table(host(), {"name": extractor})
    except NstkitError as exc:
        fail(exc)
    if table is None:
        fail(NstkitError(f"extractor {extractor!r} does not say which layers it has"))
    aliases = {canonical: alias for alias, canonical in table.aliases.items()}
    for name in table.names:
        console.print(name + (f"  (alias: {aliases[name]})" if name in aliases else ""))
