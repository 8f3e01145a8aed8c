"""Built-in optimisers: lbfgs, adam, sgd."""

from __future__ import annotations

from nstkit import optim
from nstkit.hookspecs import Register, hookimpl


@hookimpl
def register_optimizers(register: Register) -> None:
    register("lbfgs", optim.lbfgs)
    register("adam", optim.adam)
    register("sgd", optim.sgd)
