"""The nstkit hook implementation: registers the ``mrf`` loss term."""

from __future__ import annotations

from nstkit import hookimpl
from nstkit.hookspecs import Register
from nstkit_mrf.loss import MRFLoss


@hookimpl
def register_losses(register: Register) -> None:
    register("mrf", MRFLoss, description="MRF patch-matching style loss (Li & Wand 2016)")
