"""Optimisers for the image: one ``step(closure)`` call is one iteration."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def lbfgs(params: Iterable[torch.Tensor], lr: float = 1.0, history_size: int = 100,
          line_search: str | None = None) -> torch.optim.Optimizer:
    """L-BFGS (``torch.optim.LBFGS``) doing one iteration per ``step``; its curvature history
    carries over between steps. ``line_search="strong_wolfe"`` trades evaluations for
    robustness."""
    return torch.optim.LBFGS(params, lr=lr, max_iter=1, history_size=history_size,
                             line_search_fn=line_search)


def adam(params: Iterable[torch.Tensor], lr: float = 0.02,
         betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """Adam; ``lr`` is in image units (pixels in ``[0, 1]``)."""
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas))  # type: ignore[arg-type]


def sgd(params: Iterable[torch.Tensor], lr: float = 1.0,
        momentum: float = 0.0) -> torch.optim.Optimizer:
    """Plain gradient descent (``momentum=0``), as in the CNAM report (seed 001)."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum)
