"""Colour-preservation loss term: keeps the content's chroma."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from nstkit.colour import chroma_loss
from nstkit.losses.base import ImageTerm, Targets


class ColourLoss(ImageTerm):
    """Mean squared chroma difference between the image and the content (no extractor layers).

    Args:
        space: ``"ycbcr"`` (Cb, Cr; the default) or ``"lab"`` (a, b divided by 100).
    """

    def __init__(self, layers: None = None, space: str = "ycbcr") -> None:
        super().__init__(layers)
        self.space = space
        self.target: torch.Tensor | None = None

    def prepare(self, targets: Targets) -> None:
        self.target = targets.content_image.detach()

    def forward(self, image: torch.Tensor, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if self.target is None:
            raise RuntimeError("ColourLoss.prepare() must be called before forward()")
        return chroma_loss(image, self.target.expand_as(image), self.space)
