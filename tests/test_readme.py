"""The README's command-line summary matches the command line, and the options that ``run``,
``compare`` and ``stylize`` share are one declaration each."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
import typer

from nstkit.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"


def _cli() -> click.Group:
    return typer.main.get_command(app)  # type: ignore[return-value]


def _summary() -> str:
    text = README.read_text("utf-8")
    section = text[text.index("## Command line"):]
    return section[section.index("```") + 3:section.index("```", section.index("```") + 3)]


def _commands(group: click.Group, prefix: str = "") -> dict[str, click.Command]:
    found = {}
    for name, command in group.commands.items():
        found[prefix + name] = command
        if isinstance(command, click.Group):
            found.update(_commands(command, f"{prefix}{name} "))
    return found


def test_every_command_is_in_the_readme_and_every_readme_command_exists() -> None:
    listed = {" ".join(re.findall(r"^nstkit ((?:[a-z]+)(?: [a-z]+)?)", line)[0].split()[:2])
              for line in _summary().splitlines() if line.startswith("nstkit ")}
    commands = _commands(_cli())
    listed = {name if name in commands else name.split()[0] for name in listed}
    assert listed == set(commands)


def test_every_option_in_the_readme_exists() -> None:
    commands = _commands(_cli())
    current = None
    for line in _summary().splitlines():
        if line.startswith("nstkit "):
            words = line.split()
            current = " ".join(words[1:3]) if " ".join(words[1:3]) in commands else words[1]
        if current is None:
            continue
        options = {opt for param in commands[current].params for opt in param.opts}
        for option in re.findall(r"(--[a-z][a-z-]*)", line.split("#")[0]):
            assert option in options, f"{option} is not an option of nstkit {current}"


@pytest.mark.parametrize("option", ["--size", "--iterations", "--seed", "--device", "--set"])
def test_shared_options_are_one_declaration(option: str) -> None:
    commands = _commands(_cli())
    helps = {name: next(p.help for p in commands[name].params if option in p.opts)
             for name in ("run", "compare", "stylize")}
    assert len(set(helps.values())) == 1, helps
