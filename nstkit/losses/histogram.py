"""Histogram loss (Risser, Wilmot & Barnes 2017): each channel remapped to the style's
histogram by exact histogram matching, the features pulled towards the remapped ones."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from nstkit.losses.base import LayerSpec, LossTerm, Targets, positions
from nstkit.losses.quantiles import interpolate_quantiles, mixture_sorted, quantile_levels

HISTOGRAM_LAYERS = ("relu1_1", "relu4_1")
"""Risser et al.'s histogram layers."""


def match_histograms(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Exact histogram matching per channel: each position's value replaced by the target's
    value of the same rank within its channel (ties broken by the sort). Not differentiable
    (a rearrangement of ``target``).

    Shape:
        - features: ``(B, C, H, W)``.
        - target: ``(C, H W)``, ``(1, C, H W)`` or ``(B, C, H W)``, sorted along the last
          dimension (the target distribution's quantiles at the levels of :func:`quantile_levels`).
        - Output: ``(B, C, H, W)``.
    """
    if features.dim() != 4:
        raise ValueError(f"features must be (B, C, H, W), got {tuple(features.shape)}")
    flat = features.detach().flatten(2)
    if target.shape[-2:] != flat.shape[-2:]:
        raise ValueError(f"target {tuple(target.shape)} does not match features "
                         f"{tuple(features.shape)} (want (C, H W) = {tuple(flat.shape[-2:])})")
    order = flat.argsort(dim=-1)
    remapped = torch.empty_like(flat)
    remapped.scatter_(-1, order, target.to(flat).expand_as(flat))
    return remapped.view_as(features)


def histogram_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean((F - R)^2)`` with ``R = match_histograms(F, target)`` held constant.

    The value is the squared 1-D Wasserstein distance per channel, averaged (the sorted
    features against the target's quantiles), and the gradient ``2 (F - R) / n`` moves each
    position towards the target value of its rank.

    Shape:
        - features: ``(B, C, H, W)``; target: as for :func:`match_histograms`.
        - Output: scalar.
    """
    return (features - match_histograms(features, target)).pow(2).mean()


class HistogramLoss(LossTerm):
    """Style loss matching each channel's full histogram to the style's (Risser et al. 2017).

    Per layer and channel the style's sorted values are kept (one copy of the style's features,
    sorted, made once per job); the target of an image with ``N`` positions is the style's
    quantile function at the image's ``N`` levels, interpolated linearly when the style has a
    different number of positions, and kept per ``N`` until the next :meth:`prepare` (a tiled
    image has a few core sizes). Style images blended with weights ``b_k`` give the histogram
    of the mixture ``Σ b_k P_k`` (see :mod:`nstkit.losses.quantiles`).

    The term needs every position of a layer, so a tiled stage evaluates it per tile (each
    tile's histogram matched to the style's), not on the whole image.

    Args:
        layers: default ``relu1_1`` and ``relu4_1`` (Risser et al.), equal weights.
    """

    default_layers = HISTOGRAM_LAYERS
    reads_style = True
    supports_masks = False  # exact histogram matching of every position: no weighted form

    def __init__(self, layers: LayerSpec = None) -> None:
        super().__init__(layers)
        self.sorted: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._targets: dict[tuple[str, int, torch.dtype, torch.device], torch.Tensor] = {}

    def prepare(self, targets: Targets) -> None:
        samples = {layer: [features[layer].detach()[0].flatten(1)
                           for features in targets.style_features] for layer in self.layers}
        self.sorted = {layer: mixture_sorted(values, targets.style_blend)
                       for layer, values in samples.items()}
        self._targets = {}

    def target(self, layer: str, count: int, like: torch.Tensor) -> torch.Tensor:
        """The style's quantiles for ``count`` positions at ``layer``, ``(C, count)``, in
        ``like``'s dtype and on its device."""
        key = (layer, count, like.dtype, like.device)
        if key not in self._targets:
            values, levels = self.sorted[layer]
            at = quantile_levels(count, device=values.device, dtype=values.dtype)
            self._targets[key] = interpolate_quantiles(values, levels, at).to(like)
        return self._targets[key]

    def forward(self, image: torch.Tensor, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        total = None
        for layer, weight in self.layers.items():
            value = features[layer]
            target = self.target(layer, positions(value), value)
            term = weight * histogram_loss(value, target)
            total = term if total is None else total + term
        assert total is not None
        return total
