"""The nstkit hook implementation: registers the ``mrf`` loss term.

nstkit imports this module at start-up (every command, ``nstkit --help`` included), so it
imports no torch: the loss is named by a ``"module:attribute"`` string, imported when a term is
first built, and its options are declared by :class:`nstkit_mrf.options.MRFOptions`.
"""

from __future__ import annotations

from nstkit import hookimpl
from nstkit.hookspecs import Register
from nstkit_mrf.options import MRFOptions


@hookimpl
def register_losses(register: Register) -> None:
    register("mrf", "nstkit_mrf.loss:MRFLoss", options=MRFOptions,
             description="MRF patch-matching style loss (Li & Wand 2016)")
