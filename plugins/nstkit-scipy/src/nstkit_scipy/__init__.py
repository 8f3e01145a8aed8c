"""nstkit-scipy: SciPy's L-BFGS-B (``fmin_l_bfgs_b``) as the nstkit optimiser ``scipy-lbfgsb``.

``nstkit.stylize(..., optimizer="scipy-lbfgsb", optimizer_options={"maxfun": 20})``: one
iteration is one ``fmin_l_bfgs_b`` call of at most ``maxfun`` evaluations, pixels bounded to
``[0, 1]``.

Importing the package imports no torch, NumPy or SciPy (nstkit loads
:mod:`nstkit_scipy.plugin` at start-up); the names below load :mod:`nstkit_scipy.optimizer` on
first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nstkit_scipy.optimizer import LBFGSB, assign, flatten

__version__ = "0.1.0"
__all__ = ["LBFGSB", "assign", "flatten"]


def __getattr__(name: str) -> Any:
    """The optimiser module's public names, imported (with torch and SciPy) when first asked
    for."""
    if name in __all__:
        from nstkit_scipy import optimizer

        return getattr(optimizer, name)
    raise AttributeError(f"module 'nstkit_scipy' has no attribute {name!r}")
