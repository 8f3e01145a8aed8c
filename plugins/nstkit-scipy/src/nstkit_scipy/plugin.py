"""The nstkit hook implementation: registers the ``scipy-lbfgsb`` optimiser.

nstkit imports this module at start-up (every command, ``nstkit --help`` included), so it
imports no torch, NumPy or SciPy: the optimiser is named by a ``"module:attribute"`` string,
imported when it is first built, and its options are declared by
:class:`nstkit_scipy.options.LBFGSBOptions`.
"""

from __future__ import annotations

from nstkit import hookimpl
from nstkit.hookspecs import Register
from nstkit_scipy.options import LBFGSBOptions


@hookimpl
def register_optimizers(register: Register) -> None:
    register("scipy-lbfgsb", "nstkit_scipy.optimizer:LBFGSB", options=LBFGSBOptions,
             description="SciPy fmin_l_bfgs_b, pixels bounded to [0, 1], maxfun per step")
