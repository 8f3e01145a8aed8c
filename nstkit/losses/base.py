"""The loss-term interface and the targets it is prepared with."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from nstkit.layers import equal_weights

LayerSpec = Mapping[str, float] | Sequence[str] | None


@dataclass
class Region:
    """One styled region of a masked job (:attr:`Targets.regions`).

    Attributes:
        name: what names the region, its mask colour (``"#ff0000"``).
        weight: ``(1 or B, 1, H, W)`` in ``[0, 1]`` at the content's ``(H, W)``: how much each
            pixel belongs to the region (soft at its edges once resized).
        style_images: the region's style images, each ``(1, 3, h, w)``, RGB in ``[0, 1]``.
        style_features: per style image, layer name to ``(1, C, h_l, w_l)``.
        style_blend: one weight per style image, summing to 1.
        style_weights: per style image, ``(1, 1, h, w)`` in ``[0, 1]`` (the part of the style
            image that counts, from a style mask), or ``None`` for all of it.
    """

    name: str
    weight: torch.Tensor
    style_images: list[torch.Tensor]
    style_features: list[Mapping[str, torch.Tensor]]
    style_blend: list[float]
    style_weights: list[torch.Tensor | None]


@dataclass
class Targets:
    """What a stylisation aims at, computed once per job (never per step).

    Attributes:
        content_image: ``(B, 3, H, W)``, RGB in ``[0, 1]``.
        content_features: layer name to ``(B, C, H_l, W_l)`` features of the content.
        style_images: one ``(1, 3, h, w)`` tensor per style image, RGB in ``[0, 1]``.
        style_features: per style image, layer name to ``(1, C, h_l, w_l)``.
        style_blend: one weight per style image, summing to 1.
        guides: per-job images a caller hands to the terms, by name (``stylize(guides=...)``),
            each ``(1 or B, C, H, W)`` at the content's ``(H, W)`` and on its device (resized
            per stage, cropped per tile like ``content_image``); empty unless given. A video
            passes the previous frame's result warped to this one and where it is valid.
        regions: ``None`` for an unmasked job; else the styled regions of its mask
            (:class:`Region`; a region that keeps the content is not listed). A term that
            reads the style compares with each region's style over that region only
            (:attr:`LossTerm.supports_masks`).
    """

    content_image: torch.Tensor
    content_features: dict[str, torch.Tensor]
    style_images: list[torch.Tensor]
    style_features: list[dict[str, torch.Tensor]]
    style_blend: list[float]
    guides: Mapping[str, torch.Tensor] = field(default_factory=dict)
    regions: list[Region] | None = None


def fit_guides(guides: Mapping[str, torch.Tensor] | None,
               content: torch.Tensor) -> dict[str, torch.Tensor]:
    """``guides`` resized to ``content``'s ``(H, W)`` (bilinear, antialiased when shrinking; no
    clamping, so any values pass) and moved to its device, in the content's dtype.

    Shape:
        - guides: each ``(1, C, h, w)`` or ``(B, C, h, w)``, any ``C``.
        - content: ``(B, 3, H, W)``.
        - Output: each ``(1 or B, C, H, W)``.

    Raises:
        ValueError: a guide is not a 4-D tensor whose batch is 1 or the content's.
    """
    fitted: dict[str, torch.Tensor] = {}
    for name, guide in (guides or {}).items():
        if not isinstance(guide, torch.Tensor) or guide.dim() != 4 \
                or guide.shape[0] not in (1, content.shape[0]):
            shape = tuple(guide.shape) if isinstance(guide, torch.Tensor) else type(guide)
            raise ValueError(f"guide {name!r} must be a (1 or {content.shape[0]}, C, H, W) "
                             f"tensor, got {shape}")
        guide = guide.detach().to(device=content.device, dtype=content.dtype)
        shape = tuple(content.shape[-2:])
        if tuple(guide.shape[-2:]) != shape:
            shrink = guide.shape[-2] > shape[0] or guide.shape[-1] > shape[1]
            guide = F.interpolate(guide, size=shape, mode="bilinear", align_corners=False,
                                  antialias=shrink)
        fitted[name] = guide
    return fitted


class Recording:
    """A :class:`Targets` that records which of its fields a term's ``prepare`` reads."""

    def __init__(self, targets: Targets) -> None:
        self._targets, self.read = targets, set[str]()

    def __getattr__(self, name: str) -> Any:
        self.read.add(name)
        return getattr(self._targets, name)


STYLE_FIELDS = frozenset({"style_features", "style_images"})
"""The :class:`Targets` fields a term that reads the style reads."""

PLACE_FIELDS = frozenset({"content_image", "content_features", "guides", "regions"})
"""The :class:`Targets` fields that depend on where in the image a term looks (a tiled stage
prepares a term that reads one of them per tile)."""


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

    Subclasses set ``default_layers`` (empty for image-space terms such as TV) and
    ``reads_style``, may override :meth:`prepare` to compute targets once per job and
    :meth:`start_step` to change with the step, and implement :meth:`forward`.

    ``reads_style``: whether the term compares with the style images (its :meth:`prepare`
    reads ``style_features`` or ``style_images``); ``strength`` scales the weights of those
    that do. ``None`` (undeclared) works everywhere except with a ``strength`` other than 1.
    :func:`nstkit.testing.check_loss` checks a declaration against what ``prepare`` reads.

    ``supports_masks``: whether the term handles region masks (:attr:`Targets.regions`). A
    :class:`StatisticLoss` that declares ``True`` takes per-position ``weights`` in
    :meth:`StatisticLoss.statistics` and nstkit does the rest (per-region targets, guided
    statistics, tiles); any other term that declares ``True`` reads ``targets.regions`` in its
    :meth:`prepare` itself. A masked job refuses a term that reads the style and does not
    declare ``True``; terms that do not read the style (content, TV) apply everywhere.

    Args:
        layers: layer names (equal weights), a mapping of layer name to weight, or ``None``
            for ``default_layers``.
    """

    default_layers: tuple[str, ...] = ()
    reads_style: ClassVar[bool | None] = None
    supports_masks: ClassVar[bool | None] = None

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

    def start_step(self, step: int) -> None:
        """Called before each optimiser step (``step`` counts from 1; once more, with
        ``iterations + 1``, before the final evaluation), never between the evaluations of
        one step: a term whose objective changes over a run (random projections) changes it
        here, so an L-BFGS line search sees one objective. Does nothing by default."""

    def forward(self, image: torch.Tensor, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The term's unweighted value, a scalar tensor.

        Args:
            image: the image being optimised, ``(B, 3, H, W)``, RGB in ``[0, 1]``.
            features: the extractor's features of ``image`` for (at least) ``self.layers``.
        """
        raise NotImplementedError


class ImageTerm(LossTerm):
    """A term that reads the image itself, not extractor layers (TV, colour, keep); it refuses
    ``layers`` and reads no style unless a subclass says otherwise."""

    reads_style = False

    def __init__(self, layers: None = None) -> None:
        if layers:
            raise ValueError(f"{type(self).__name__} reads the image, not extractor layers; "
                             f"remove 'layers' (got {layers!r})")
        super().__init__({})


def positions(features: torch.Tensor) -> int:
    """The number of positions ``H * W`` of ``(B, C, H, W)`` features."""
    return features.shape[-2] * features.shape[-1]


def flat_weights(weights: Mapping[str, torch.Tensor] | None, layer: str,
                 features: torch.Tensor) -> torch.Tensor | None:
    """``weights[layer]`` flattened to ``(1 or B, 1, H_l W_l)`` in ``features``' dtype and on
    its device, or ``None`` when there are no weights for ``layer``.

    Shape:
        - weights[layer]: ``(1 or B, 1, H_l, W_l)``; features: ``(B, C, H_l, W_l)``.

    Raises:
        ValueError: the weights do not cover the layer's positions.
    """
    if weights is None or layer not in weights:
        return None
    weight = weights[layer]
    if weight.dim() != 4 or weight.shape[1] != 1 or weight.shape[-2:] != features.shape[-2:] \
            or weight.shape[0] not in (1, features.shape[0]):
        raise ValueError(f"weights at {layer!r} must be (1 or {features.shape[0]}, 1, "
                         f"{features.shape[-2]}, {features.shape[-1]}), got "
                         f"{tuple(weight.shape)}")
    return weight.flatten(2).to(features)


class StatisticLoss(LossTerm):
    """A term that sees the image only through means over positions of per-position statistics
    (a Gram matrix is the mean of ``F F^T`` over positions).

    Such a term adds up over tiles exactly: the sums of :meth:`statistics` over tiles that
    partition the image, divided by the positions, are the whole image's means. A tiled
    stylisation (``tiling:``) uses that to match the whole image's statistics, not each tile's.
    Subclasses implement :meth:`statistics`, :meth:`loss_from_means` and :meth:`set_targets`;
    :meth:`prepare` and :meth:`forward` follow from them. One that declares
    ``supports_masks = True`` accepts ``weights`` in :meth:`statistics`, and a masked job then
    matches each region's weighted means to that region's style
    (:class:`nstkit.losses.guided.GuidedStatistic`).
    """

    reads_style = True

    def statistics(self, features: Mapping[str, torch.Tensor],
                   weights: Mapping[str, torch.Tensor] | None = None
                   ) -> dict[str, torch.Tensor]:
        """Per layer in ``self.layers``, the SUM over positions of the statistic, ``(B, ...)``.

        With ``weights`` (only for ``supports_masks = True``), the sum of each position's
        statistic times its weight: per layer ``(1 or B, 1, H_l, W_l)``, non-negative, the
        layer's positions; a layer missing from ``weights`` weighs every position 1.
        """
        raise NotImplementedError

    def loss_from_means(self, means: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The term's value (a scalar) from the image's means (statistics / positions)."""
        raise NotImplementedError

    def set_targets(self, style_means: Sequence[Mapping[str, torch.Tensor]],
                    blend: Sequence[float]) -> None:
        """Keep the targets, given each style image's means (``(1, ...)`` per layer) and their
        blend weights (summing to 1)."""
        raise NotImplementedError

    def means(self, features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """:meth:`statistics` divided by each layer's number of positions."""
        return {layer: value / positions(features[layer])
                for layer, value in self.statistics(features).items()}

    def prepare(self, targets: Targets) -> None:
        with torch.no_grad():
            style_means = [self.means(features) for features in targets.style_features]
        self.set_targets(style_means, targets.style_blend)

    def forward(self, image: torch.Tensor, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.loss_from_means(self.means(features))
