"""The nstkit hook implementation: registers the ``scipy-lbfgsb`` optimiser."""

from __future__ import annotations

from nstkit import hookimpl
from nstkit.hookspecs import Register
from nstkit_scipy.optimizer import LBFGSB


@hookimpl
def register_optimizers(register: Register) -> None:
    register("scipy-lbfgsb", LBFGSB,
             description="SciPy fmin_l_bfgs_b, pixels bounded to [0, 1], maxfun per step")
