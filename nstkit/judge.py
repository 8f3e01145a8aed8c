"""Judged distances: one fixed yardstick for every recipe, whatever the recipe optimised.

``nstkit compare`` and the benchmarks score each output with the same extractor (VGG19, the
original weights, max pooling), the same layers and the same image size:

- relative content distance ``||F(x) - F(c)|| / ||F(c)||`` at ``relu4_2``;
- relative style distance: the mean over ``relu1_1 .. relu5_1`` of
  ``||G(x) - G(s)|| / ||G(s)||`` with ``G = F F^T / (H W)``.

Norms are Frobenius norms. Both are 0 for a perfect match and scale-free: multiplying all
features by a constant leaves them unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from nstkit.image import ImageInput, load_image, resize_longest, resize_to
from nstkit.losses.gram import STYLE_LAYERS, gram_matrix

CONTENT_LAYER = "relu4_2"
JUDGE_SIZE = 512


class Features(Protocol):
    def __call__(self, image: torch.Tensor, layers: Sequence[str]) -> Mapping[str, torch.Tensor]:
        ...


def relative_content_distance(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``||F - P|| / ||P||`` per image.

    Shape:
        - features: ``(B, C, H, W)``; target: ``(B, C, H, W)`` or ``(1, C, H, W)``.
        - Output: ``(B,)``.
    """
    target = target.expand_as(features)
    diff = (features - target).flatten(1).norm(dim=1)
    return diff / target.flatten(1).norm(dim=1).clamp_min(1e-12)


def relative_gram_distance(features: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    """``||G(F) - A|| / ||A||`` per image, ``G`` from :func:`nstkit.losses.gram.gram_matrix`.

    Shape:
        - features: ``(B, C, H, W)``; target_gram: ``(1, C, C)`` or ``(B, C, C)``.
        - Output: ``(B,)``.
    """
    gram = gram_matrix(features)
    target = target_gram.expand_as(gram)
    diff = (gram - target).flatten(1).norm(dim=1)
    return diff / target.flatten(1).norm(dim=1).clamp_min(1e-12)


@dataclass(frozen=True)
class Scores:
    """Judged distances of one output (0 is a perfect match)."""

    content: float
    style: float


class Judge:
    """Scores outputs against their content and style images with fixed layers and size.

    Args:
        extractor: maps ``(B, 3, H, W)`` RGB in ``[0, 1]`` and layer names to features;
            ``None`` builds VGG19 with the original weights and max pooling.
        size: longest side, in pixels, the output and the style image are resized to; the
            content image is resized to the output's shape.
        device: where the features are computed.
    """

    def __init__(self, extractor: Features | None = None, size: int = JUDGE_SIZE,
                 device: str | torch.device = "cpu", content_layer: str = CONTENT_LAYER,
                 style_layers: Sequence[str] = STYLE_LAYERS) -> None:
        if extractor is None:
            from nstkit.extractors.vgg import VGGExtractor

            extractor = VGGExtractor("vgg19", pooling="max", weights="original").to(device)
        self.extractor, self.size, self.device = extractor, size, torch.device(device)
        self.content_layer, self.style_layers = content_layer, tuple(style_layers)
        self._style_grams: dict[str, dict[str, torch.Tensor]] = {}

    def _features(self, image: torch.Tensor, layers: Sequence[str]) -> Mapping[str, torch.Tensor]:
        with torch.no_grad():
            return self.extractor(image.to(self.device), layers)

    def style_grams(self, style: ImageInput, key: str | None = None) -> dict[str, torch.Tensor]:
        """Gram matrices ``(1, C, C)`` of ``style`` per style layer, cached under ``key``."""
        if key is not None and key in self._style_grams:
            return self._style_grams[key]
        image = resize_longest(load_image(style), self.size)
        feats = self._features(image, self.style_layers)
        grams = {layer: gram_matrix(feats[layer]) for layer in self.style_layers}
        if key is not None:
            self._style_grams[key] = grams
        return grams

    def __call__(self, output: ImageInput, content: ImageInput, style: ImageInput,
                 style_key: str | None = None) -> Scores:
        """Judge one output; images as for :func:`nstkit.image.load_image` (one image each)."""
        out = resize_longest(load_image(output), self.size)
        target = resize_to(load_image(content), tuple(out.shape[-2:]))
        layers = (self.content_layer, *self.style_layers)
        feats = self._features(torch.cat([out, target]), layers)
        content = relative_content_distance(feats[self.content_layer][:1],
                                            feats[self.content_layer][1:])
        grams = self.style_grams(style, style_key)
        style_dist = torch.stack([relative_gram_distance(feats[layer][:1], grams[layer])
                                  for layer in self.style_layers]).mean()
        return Scores(float(content), float(style_dist))
