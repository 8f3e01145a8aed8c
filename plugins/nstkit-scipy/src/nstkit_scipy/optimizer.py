"""SciPy's L-BFGS-B (``scipy.optimize.fmin_l_bfgs_b``) as an nstkit optimiser.

One ``step(closure)`` is one call of ``fmin_l_bfgs_b`` limited to ``maxfun`` evaluations: a
"burst", as in the Keras tutorial (seed 000: ``maxfun=15`` per iteration) and the fast.ai
lesson (seed 004: ``maxfun=20``). Each burst starts L-BFGS afresh (no curvature history is
kept between steps), exactly as those loops calling ``fmin_l_bfgs_b`` repeatedly do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from scipy.optimize import fmin_l_bfgs_b

Bounds = tuple[float | None, float | None] | None


def flatten(tensors: Iterable[torch.Tensor]) -> np.ndarray:
    """The tensors' values as one float64 vector (copied to the CPU).

    Shape:
        - tensors: any shapes, total ``n`` elements.
        - Output: ``(n,)``, ``float64``.
    """
    return np.concatenate([t.detach().to("cpu", torch.float64).reshape(-1).numpy()
                           for t in tensors])


def assign(tensors: Iterable[torch.Tensor], x: np.ndarray) -> None:
    """Copy the ``(n,)`` vector ``x`` into the tensors in place, keeping their dtype and device."""
    offset = 0
    with torch.no_grad():
        for t in tensors:
            n = t.numel()
            t.copy_(torch.from_numpy(np.ascontiguousarray(x[offset:offset + n])).view_as(t))
            offset += n


def _gradients(tensors: list[torch.Tensor]) -> np.ndarray:
    """The tensors' ``.grad`` as one float64 ``(n,)`` vector (zeros where there is none)."""
    return flatten(t.grad if t.grad is not None else torch.zeros_like(t) for t in tensors)


class LBFGSB(torch.optim.Optimizer):
    """L-BFGS-B with box bounds through ``scipy.optimize.fmin_l_bfgs_b``, one burst per step.

    The tensors are optimised as one float64 vector (SciPy's precision); the loss is evaluated
    in the tensors' own dtype and device, and the result is copied back into them in place.

    Args:
        params: the tensors to optimise (nstkit passes ``[image]``, RGB in ``[0, 1]``).
        maxfun: evaluations per step. SciPy checks the count only when a line search ends,
            so a burst may overrun by a few evaluations (at most ``maxls``).
        m: number of corrections kept (L-BFGS memory), SciPy's default 10.
        factr: stop when the relative reduction of the loss is below ``factr`` x machine
            epsilon (1e7: moderate accuracy, SciPy's default).
        pgtol: stop when every component of the projected gradient is below this.
        maxiter: iterations per step (``maxfun`` is normally the limit that bites).
        maxls: evaluations per line search.
        bounds: ``(low, high)`` for every element, ``(0, 1)`` by default to keep pixels in
            range; ``None`` (or ``None`` for one side) leaves it unbounded, as in the seeds
            that optimise the mean-subtracted Caffe image.

    Attributes:
        info: SciPy's report of the last step (``funcalls``, ``nit``, ``task``, ``warnflag``,
            ``grad``), plus ``loss``: the loss of the point it returned.
    """

    def __init__(self, params: Iterable[torch.Tensor], maxfun: int = 20, m: int = 10,
                 factr: float = 1e7, pgtol: float = 1e-5, maxiter: int = 15000,
                 maxls: int = 20, bounds: Bounds = (0.0, 1.0)) -> None:
        for name, value in (("maxfun", maxfun), ("m", m), ("maxiter", maxiter),
                            ("maxls", maxls)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if bounds is not None and len(bounds) != 2:
            raise ValueError(f"bounds must be (low, high) or None, got {bounds!r}")
        defaults = {"maxfun": int(maxfun), "m": int(m), "factr": float(factr),
                    "pgtol": float(pgtol), "maxiter": int(maxiter), "maxls": int(maxls),
                    "bounds": None if bounds is None else tuple(bounds)}
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("LBFGSB optimises all its tensors together: use one param group")
        self.info: dict[str, Any] = {}

    def _tensors(self) -> list[torch.Tensor]:
        return list(self.param_groups[0]["params"])

    def step(  # type: ignore[override]
        self, closure: Callable[[], torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Run one ``fmin_l_bfgs_b`` burst from the tensors' current values.

        Args:
            closure: zeroes the gradients, computes the loss, calls ``backward()`` and returns
                the loss (a scalar tensor); called once per evaluation, the first time at the
                starting point.

        Returns:
            The loss at the starting point (what ``torch.optim.LBFGS`` returns too).
        """
        if closure is None:
            raise ValueError("LBFGSB.step needs a closure that evaluates the loss")
        group, tensors = self.param_groups[0], self._tensors()
        first: list[torch.Tensor] = []

        def loss_and_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
            assign(tensors, x)
            with torch.enable_grad():
                loss = closure()
            if not first:
                first.append(loss.detach())
            return float(loss.detach()), _gradients(tensors)

        x0 = flatten(tensors)
        bounds = None if group["bounds"] is None else [group["bounds"]] * x0.size
        x, loss, info = fmin_l_bfgs_b(
            loss_and_grad, x0, bounds=bounds, m=group["m"], factr=group["factr"],
            pgtol=group["pgtol"], maxfun=group["maxfun"], maxiter=group["maxiter"],
            maxls=group["maxls"])
        assign(tensors, x)
        self.info = {**info, "loss": float(loss)}
        return first[0]
