"""The feature-extractor interface every extractor plugin implements."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

import torch
from torch import nn

from nstkit.layers import LayerTable


class InputNormalization(nn.Module):
    """Maps RGB in ``[0, 1]`` to what a network's weights expect.

    ``y = (flip(x) * scale - mean) / std`` where ``flip`` reverses the channels when ``bgr``.

    Shape:
        - Input: ``(B, 3, H, W)``, RGB in ``[0, 1]``.
        - Output: ``(B, 3, H, W)``.
    """

    def __init__(self, mean: Iterable[float], std: Iterable[float], scale: float = 1.0,
                 bgr: bool = False) -> None:
        super().__init__()
        self.scale, self.bgr = scale, bgr
        self.register_buffer("mean", torch.tensor(list(mean)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std)).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.bgr:
            image = image.flip(1)
        return (image * self.scale - self.mean) / self.std


class FeatureExtractor(nn.Module):
    """Base class: named intermediate feature maps of an image.

    Subclasses set ``layer_names`` (in forward order) and ``aliases`` and implement ``forward``.
    """

    layer_names: tuple[str, ...] = ()
    aliases: ClassVar[dict[str, str]] = {}

    def resolve(self, layer: str) -> str:
        """The canonical name of ``layer`` (aliases accepted); unknown names list valid ones."""
        return self.layer_table().resolve(layer)

    def depth(self, layer: str) -> int:
        """Position of ``layer`` in forward order (0 is the first layer)."""
        return self.layer_table().depth(layer)

    def layer_table(self) -> LayerTable:
        """The extractor's layer names and aliases (built once: ``forward`` resolves its
        layers on every step; subclasses set ``layer_names`` and ``aliases`` in ``__init__``)."""
        table = self.__dict__.get("_layer_table")
        if table is None:
            table = LayerTable(tuple(self.layer_names), dict(self.aliases), type(self).__name__)
            self.__dict__["_layer_table"] = table
        return table

    def forward(self, image: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        """Feature maps of ``layers`` (canonical names) for RGB ``image`` in ``[0, 1]``."""
        raise NotImplementedError
