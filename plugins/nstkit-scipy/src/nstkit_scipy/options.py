"""The options of the ``scipy-lbfgsb`` optimiser, as a pydantic model: recipes are checked
against it without importing torch, NumPy or SciPy (``nstkit validate`` stays fast)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from nstkit.config import NonNegative, Number, Options

PositiveInt = Annotated[int, Field(strict=True, ge=1)]
Bound = Number | None


class LBFGSBOptions(Options):
    """SciPy fmin_l_bfgs_b, pixels bounded to [0, 1], at most maxfun evaluations per step.

    Mirrors the keyword options of :class:`nstkit_scipy.optimizer.LBFGSB` (``iterations`` is
    the optimiser's own key); the plugin's tests check that the defaults agree. The limits are
    SciPy's: positive counts, ``factr >= 0``, ``pgtol >= 0``, and a lower bound not above the
    upper one.
    """

    maxfun: PositiveInt = Field(20, description="loss evaluations per step (one burst)")
    m: PositiveInt = Field(10, description="L-BFGS memory: corrections kept")
    factr: NonNegative = Field(1e7, description="stop when the relative loss reduction is "
                                                "below factr x machine epsilon")
    pgtol: NonNegative = Field(1e-5, description="stop when every projected-gradient "
                                                 "component is below this")
    maxiter: PositiveInt = Field(15000, description="L-BFGS iterations per step")
    maxls: PositiveInt = Field(20, description="evaluations per line search")
    bounds: tuple[Bound, Bound] | None = Field(
        (0.0, 1.0), description="(low, high) for every pixel; null (or null for one side) "
                                "for unbounded")

    @field_validator("bounds")
    @classmethod
    def _low_not_above_high(cls, bounds: tuple[float | None, float | None] | None
                            ) -> tuple[float | None, float | None] | None:
        low, high = bounds if bounds is not None else (None, None)
        if low is not None and high is not None and low > high:
            raise ValueError(f"the lower bound {low:g} is above the upper bound {high:g}")
        return bounds
