"""The temporal loss of Ruder, Dosovitskiy & Brox (2016), *Artistic style transfer for videos*:
the stylised frame is pulled towards the previous frame's result, warped into this frame by
optical flow, at the pixels where the flow can be trusted.

Each op is a function; :class:`TemporalLoss` is the ``nstkit.losses.LossTerm`` calling it. The
term reads two guides (``nstkit.stylize(..., guides=...)``, see :data:`GUIDE_TARGET` and
:data:`GUIDE_WEIGHTS`); without them (a still image, a clip's first frame) it is zero.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from nstkit.losses import ImageTerm, Targets

GUIDE_TARGET = "temporal.warped"
"""The guide holding the previous frame's result warped to this frame, ``(1, 3, H, W)``."""
GUIDE_WEIGHTS = "temporal.weights"
"""The guide holding the per-pixel weights ``c``, ``(1, 1, H, W)`` in ``[0, 1]`` (0: occluded)."""


def temporal_loss(image: torch.Tensor, target: torch.Tensor,
                  weights: torch.Tensor) -> torch.Tensor:
    """``1/D Σ_k c_k (x_k - ω_k)²``: Ruder et al.'s short-term temporal loss, ``D = B·C·H·W``
    (every pixel counts in ``D``, masked or not, as in the paper).

    Args:
        image: ``x``, the frame being stylised.
        target: ``ω``, the previous frame's result warped into this frame.
        weights: ``c``, 1 where the flow is trusted, 0 where it is not (broadcast over
            channels).

    Shape:
        - image: ``(B, C, H, W)``, RGB in ``[0, 1]``.
        - target: ``(B or 1, C, H, W)``.
        - weights: ``(B or 1, 1, H, W)``.
        - Output: scalar.
    """
    if image.dim() != 4 or target.dim() != 4 or weights.dim() != 4:
        raise ValueError(f"image, target and weights must be (B, C, H, W), got "
                         f"{tuple(image.shape)}, {tuple(target.shape)}, {tuple(weights.shape)}")
    if target.shape[1:] != image.shape[1:] or weights.shape[-2:] != image.shape[-2:] \
            or weights.shape[1] != 1:
        raise ValueError(f"target {tuple(target.shape)} must be (B, C, H, W) and weights "
                         f"{tuple(weights.shape)} (B, 1, H, W) like the image "
                         f"{tuple(image.shape)}")
    return (weights * (image - target).pow(2)).sum() / image.numel()


class TemporalLoss(ImageTerm):
    """Short-term temporal consistency (Ruder et al. 2016): :func:`temporal_loss` towards the
    guide :data:`GUIDE_TARGET` with the weights :data:`GUIDE_WEIGHTS`.

    It reads the image itself (no extractor layers) and no style; a job without the guides
    (a still image, a clip's first frame) gets zero from it. ``nstkit video`` hands the guides
    to every frame after the first.
    """

    def __init__(self, layers: None = None) -> None:
        super().__init__(layers)
        self.target: torch.Tensor | None = None
        self.weights: torch.Tensor | None = None

    def prepare(self, targets: Targets) -> None:
        """Keep the guides, if the job has them (both or neither)."""
        guides = targets.guides
        if (GUIDE_TARGET in guides) != (GUIDE_WEIGHTS in guides):
            raise ValueError(f"the temporal loss needs both guides {GUIDE_TARGET!r} and "
                             f"{GUIDE_WEIGHTS!r}, got only {sorted(guides)}")
        self.target = guides.get(GUIDE_TARGET)
        self.weights = guides.get(GUIDE_WEIGHTS)

    def forward(self, image: torch.Tensor, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The loss of ``image`` ``(B, 3, H, W)``; zero (with a zero gradient) without guides."""
        if self.target is None or self.weights is None:
            return image.sum() * 0
        return temporal_loss(image, self.target.to(image), self.weights.to(image))
