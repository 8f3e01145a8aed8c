"""nstkit-scipy: SciPy's L-BFGS-B (``fmin_l_bfgs_b``) as the nstkit optimiser ``scipy-lbfgsb``.

``nstkit.stylize(..., optimizer="scipy-lbfgsb", optimizer_options={"maxfun": 20})``: one
iteration is one ``fmin_l_bfgs_b`` call of at most ``maxfun`` evaluations, pixels bounded to
``[0, 1]``.
"""

from nstkit_scipy.optimizer import LBFGSB, assign, flatten

__version__ = "0.1.0"
__all__ = ["LBFGSB", "assign", "flatten"]
