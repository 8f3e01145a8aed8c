"""Content (feature reconstruction) loss."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from nstkit.losses.base import LayerSpec, LossTerm, Targets


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of feature maps, so the value does not grow with image size.

    Equals Gatys et al.'s ``1/2 Σ (F - P)^2`` divided by ``B·C·H·W / 2``.

    Shape:
        - features: ``(B, C, H, W)``.
        - target: ``(B, C, H, W)`` or ``(1, C, H, W)`` (broadcast).
        - Output: scalar.
    """
    if features.shape[1:] != target.shape[1:] or target.shape[0] not in (1, features.shape[0]):
        raise ValueError(f"features {tuple(features.shape)} and target {tuple(target.shape)} "
                         "must have the same (C, H, W)")
    return F.mse_loss(features, target.expand_as(features))


class ContentLoss(LossTerm):
    """Feature reconstruction of the content image at one or more layers (default ``relu4_2``)."""

    default_layers = ("relu4_2",)
    reads_style = False

    def __init__(self, layers: LayerSpec = None) -> None:
        super().__init__(layers)
        self.targets: dict[str, torch.Tensor] = {}

    def prepare(self, targets: Targets) -> None:
        self.targets = {layer: targets.content_features[layer].detach() for layer in self.layers}

    def forward(self, image: torch.Tensor, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return sum(  # type: ignore[return-value]
            weight * content_loss(features[layer], self.targets[layer])
            for layer, weight in self.layers.items()
        )
