"""Built-in optimisers: lbfgs, adam, sgd (imported when first built)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from nstkit.config import NonNegative, Options, Positive
from nstkit.hookspecs import Register, hookimpl

Beta = Annotated[NonNegative, Field(lt=1)]


class LBFGSOptions(Options):
    """L-BFGS, one iteration per step; strong-Wolfe line search unless ``line_search: null``."""

    lr: Positive = 1.0
    history_size: Annotated[int, Field(strict=True, ge=1)] = 100
    line_search: Literal["strong_wolfe"] | None = "strong_wolfe"


class AdamOptions(Options):
    """Adam; ``lr`` in image units (pixels in [0, 1])."""

    lr: Positive = 0.02
    betas: tuple[Beta, Beta] = (0.9, 0.999)


class SGDOptions(Options):
    """Plain gradient descent (momentum 0), as in the CNAM report (seed 001)."""

    lr: Positive = 1.0
    momentum: NonNegative = 0.0


@hookimpl
def register_optimizers(register: Register) -> None:
    register("lbfgs", "nstkit.optim:lbfgs", options=LBFGSOptions)
    register("adam", "nstkit.optim:adam", options=AdamOptions)
    register("sgd", "nstkit.optim:sgd", options=SGDOptions)
