"""The ``keep`` term: a masked job's kept regions (mapped to ``null``) held to the photo's
pixels, so they stay photographic."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from nstkit.losses.base import ImageTerm, Targets


def keep_loss(image: torch.Tensor, content: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """Squared pixel difference to the content, weighted by ``kept``, averaged over all
    pixels and channels (a pixel's pull does not depend on how large its region is).

    Shape:
        - image, content: ``(B, 3, H, W)``, RGB in ``[0, 1]`` (content may be ``(1, ...)``).
        - kept: ``(1 or B, 1, H, W)`` in ``[0, 1]``.
        - Output: a scalar.
    """
    return ((image - content) ** 2 * kept).mean()


def kept_weight(targets: Targets) -> torch.Tensor | None:
    """``(1, 1, H, W)``: how much each pixel belongs to no styled region (``1 - Σ`` of the
    styled regions' weights), or ``None`` for an unmasked job."""
    if targets.regions is None:
        return None
    kept = torch.ones_like(targets.content_image[:1, :1])
    for region in targets.regions:
        kept = kept - region.weight.to(kept)
    return kept.clamp(0, 1)


class KeepLoss(ImageTerm):
    """:func:`keep_loss` over the kept regions of a masked job; zero in an unmasked job (it
    keeps no region). No extractor layers.

    Gatys et al.'s guided loss leaves a ``null`` region to the content term alone, whose deep
    layers hold neither colour nor fine detail, and the style terms' receptive fields reach
    across the mask's edge: such a region drifts in colour and grows grain. This term holds
    its pixels.
    """

    supports_masks = True  # reads targets.regions itself

    def __init__(self, layers: None = None) -> None:
        super().__init__(layers)
        self.target: torch.Tensor | None = None
        self.kept: torch.Tensor | None = None

    def prepare(self, targets: Targets) -> None:
        self.target = targets.content_image.detach()
        self.kept = kept_weight(targets)

    def forward(self, image: torch.Tensor, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if self.target is None:
            raise RuntimeError("KeepLoss.prepare() must be called before forward()")
        if self.kept is None:
            return image.sum() * 0.0
        return keep_loss(image, self.target.expand_as(image), self.kept)
