"""The nstkit hook implementations: the loss term ``temporal`` and the command ``nstkit video``.

nstkit imports this module at start-up (every command, ``nstkit --help`` included), so it
imports neither torch nor PyAV nor OpenCV: the loss is named by a ``"module:attribute"``
string, and the command imports what it needs when it runs.
"""

from __future__ import annotations

import typer

from nstkit import hookimpl
from nstkit.hookspecs import Register
from nstkit_video.options import TemporalOptions


@hookimpl
def register_losses(register: Register) -> None:
    register("temporal", "nstkit_video.loss:TemporalLoss", options=TemporalOptions,
             description="temporal consistency with the previous frame (Ruder et al. 2016)")


@hookimpl
def register_commands(cli: typer.Typer) -> None:
    from nstkit_video.cli import video

    cli.command()(video)
