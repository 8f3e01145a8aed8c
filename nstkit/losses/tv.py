"""Total variation regulariser."""

from __future__ import annotations

from collections.abc import Mapping

import kornia
import torch

from nstkit.losses.base import ImageTerm


def tv_loss(image: torch.Tensor, exponent: float = 2.0, eps: float = 1e-8) -> torch.Tensor:
    """Isotropic total variation ``mean((dx^2 + dy^2)^(exponent / 2))``.

    ``dx``, ``dy`` are forward differences on the ``(H-1) x (W-1)`` grid; the mean keeps the
    value independent of image size. ``exponent=2.5`` is the seed-000 (Keras tutorial) form
    ``(dx^2 + dy^2)^1.25``. Below 2, ``eps`` keeps the gradient finite where the image is flat.

    Shape:
        - image: ``(B, C, H, W)`` with ``H, W >= 2``.
        - Output: scalar.
    """
    if image.dim() != 4 or min(image.shape[-2:]) < 2:
        raise ValueError(f"image must be (B, C, H, W) with H, W >= 2, got {tuple(image.shape)}")
    dy = image[..., 1:, :-1] - image[..., :-1, :-1]
    dx = image[..., :-1, 1:] - image[..., :-1, :-1]
    squared = dx.pow(2) + dy.pow(2)
    if exponent < 2:
        squared = squared + eps
    return squared.pow(exponent / 2).mean()


class TVLoss(ImageTerm):
    """Total variation of the image (no extractor layers).

    Args:
        exponent: ``β`` in ``(dx^2 + dy^2)^(β/2)``; 2 by default.
        anisotropic: use kornia's ``Σ|dx| + Σ|dy|`` (per pixel) instead; ``exponent`` unused.
    """

    def __init__(self, layers: None = None, exponent: float = 2.0,
                 anisotropic: bool = False) -> None:
        super().__init__(layers)
        self.exponent, self.anisotropic = float(exponent), anisotropic

    def forward(self, image: torch.Tensor, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if self.anisotropic:
            return kornia.losses.total_variation(image, reduction="mean").mean()
        return tv_loss(image, self.exponent)
