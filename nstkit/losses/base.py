"""The loss-term interface and the targets it is prepared with."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from nstkit.layers import equal_weights

LayerSpec = Mapping[str, float] | Sequence[str] | None


@dataclass
class Targets:
    """What a stylisation aims at, computed once per job (never per step).

    Attributes:
        content_image: ``(B, 3, H, W)``, RGB in ``[0, 1]``.
        content_features: layer name to ``(B, C, H_l, W_l)`` features of the content.
        style_images: one ``(1, 3, h, w)`` tensor per style image, RGB in ``[0, 1]``.
        style_features: per style image, layer name to ``(1, C, h_l, w_l)``.
        style_blend: one weight per style image, summing to 1.
    """

    content_image: torch.Tensor
    content_features: dict[str, torch.Tensor]
    style_images: list[torch.Tensor]
    style_features: list[dict[str, torch.Tensor]]
    style_blend: list[float]


def layer_weights(layers: LayerSpec, default: Sequence[str]) -> dict[str, float]:
    """Normalise a layer spec: ``None`` -> equal weights over ``default``; a list -> equal
    weights; a mapping -> taken as given."""
    if layers is None:
        return equal_weights(list(default))
    if isinstance(layers, str):
        return {layers: 1.0}
    if isinstance(layers, Mapping):
        return {str(k): float(v) for k, v in layers.items()}
    return equal_weights(list(layers))


class LossTerm(nn.Module):
    """A loss term: reads extractor features (or the image) and returns a scalar.

    Subclasses set ``default_layers`` (empty for image-space terms such as TV), may override
    :meth:`prepare` to compute targets once per job, and implement :meth:`forward`.

    Args:
        layers: layer names (equal weights), a mapping of layer name to weight, or ``None``
            for ``default_layers``.
    """

    default_layers: tuple[str, ...] = ()

    def __init__(self, layers: LayerSpec = None) -> None:
        super().__init__()
        self.layers: dict[str, float] = layer_weights(layers, self.default_layers)
        if self.default_layers and not self.layers:
            raise ValueError(f"{type(self).__name__} needs at least one layer")

    def bind(self, resolve: Callable[[str], str]) -> None:
        """Rewrite layer names to the extractor's canonical names (aliases resolved)."""
        resolved: dict[str, float] = {}
        for layer, weight in self.layers.items():
            name = resolve(layer)
            if name in resolved:
                raise ValueError(f"layer {layer!r} is listed twice (as {name!r} too)")
            resolved[name] = weight
        self.layers = resolved

    def prepare(self, targets: Targets) -> None:
        """Compute and keep whatever the term compares against. Called once per job."""

    def forward(self, image: torch.Tensor, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The term's unweighted value, a scalar tensor.

        Args:
            image: the image being optimised, ``(B, 3, H, W)``, RGB in ``[0, 1]``.
            features: the extractor's features of ``image`` for (at least) ``self.layers``.
        """
        raise NotImplementedError
