"""Guided statistics (Gatys et al., CVPR 2017, 'Controlling Perceptual Factors in Neural Style
Transfer'): a style term's statistics computed over each region of a mask, against that
region's own style targets.

Any :class:`~nstkit.losses.StatisticLoss` whose ``statistics`` takes per-position ``weights``
(``supports_masks = True``) becomes guided by wrapping it in :class:`GuidedStatistic`: per
region, the means of its statistic weighted by the region's mask, resized to each layer
(:func:`layer_mask`), are compared with the region's style means by the wrapped term's own
``loss_from_means``; the regions' values add up. Weighted sums add up over tiles like plain
sums, so a guided term stays exact under tiling.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from nstkit.losses.base import LossTerm, Region, StatisticLoss, Targets, positions

Where = tuple[slice, slice]


def layer_mask(mask: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """A pixel mask averaged over each position of a layer of ``size = (h, w)`` positions.

    A layer of stride ``s`` (``h = H // s``, ``w = W // s``, as VGG's pooling floors) covers
    the first ``h s`` rows and ``w s`` columns: the mask is cut to them and averaged over
    ``s x s`` blocks, so a position weighs the share of its pixels in the region (soft at the
    region's edges) and lines up with the features. Sizes of no whole stride are averaged
    adaptively.

    Shape:
        - mask: ``(B, 1, H, W)``, values in ``[0, 1]``.
        - Output: ``(B, 1, h, w)``.
    """
    height, width = mask.shape[-2:]
    h, w = int(size[0]), int(size[1])
    if (h, w) == (height, width):
        return mask
    if h < 1 or w < 1:
        raise ValueError(f"a layer of {h}x{w} positions has no positions to weigh")
    stride = 2 ** round(math.log2(max(height / h, 1.0)))
    if height // stride == h and width // stride == w:
        return F.avg_pool2d(mask[..., : h * stride, : w * stride], stride)
    return F.adaptive_avg_pool2d(mask, (h, w))


class GuidedStatistic(StatisticLoss):
    """A :class:`StatisticLoss` matched region by region (Gatys et al. 2017's guided Gram
    matrices, for any statistic).

    Without regions (:attr:`Targets.regions` is ``None``) it is the wrapped term. With them,
    :meth:`prepare` keeps one copy of the term per region, given that region's style targets
    (the style's statistics weighted by the region's style mask, if any), and the value is
    ``Σ_r L_r(m_r)``: ``m_r`` the image's statistics averaged over the region,
    ``Σ_p w_r(p) s(F_p) / Σ_p w_r(p)``, with ``w_r`` the region's mask resized to each layer
    (:func:`layer_mask`). A region covering everything gives the unmasked term's value.

    :meth:`statistics` packs each region's weighted sums and the sum of its weights per layer,
    ``(B, R, D + 1)``: sums over tiles stay the whole image's. A tiled stage tells the term
    which part of each layer a tile's features cover (:meth:`place`).

    Args:
        inner: the term to guide; its class must declare ``supports_masks = True``.
    """

    reads_style = True
    supports_masks = True

    def __init__(self, inner: StatisticLoss) -> None:
        if not type(inner).supports_masks:
            raise ValueError(f"{type(inner).__name__} does not declare supports_masks = True")
        LossTerm.__init__(self, dict(inner.layers))
        self.inner = inner
        self.regions: list[tuple[StatisticLoss, torch.Tensor]] = []
        self.masked = False
        self._where: dict[str, tuple[tuple[int, int], Where]] | None = None
        self._shapes: dict[str, torch.Size] = {}
        self._masks: dict[tuple[int, str, tuple[int, int]], torch.Tensor] = {}

    def bind(self, resolve: Callable[[str], str]) -> None:
        self.inner.bind(resolve)
        self.layers = dict(self.inner.layers)

    def start_step(self, step: int) -> None:
        self.inner.start_step(step)
        for term, _ in self.regions:
            term.start_step(step)

    def prepare(self, targets: Targets) -> None:
        """The wrapped term's targets, or with regions one copy of it per region, each with
        that region's style targets."""
        regions = targets.regions
        self._masks, self._where = {}, None
        if regions is None:
            self.masked, self.regions = False, []
            self.inner.prepare(targets)
            return
        self.masked = True
        self.regions = [(self._region_term(region), region.weight.detach())
                        for region in regions]

    @torch.no_grad()
    def _region_term(self, region: Region) -> StatisticLoss:
        term = copy.deepcopy(self.inner)
        style_means = []
        for features, weight in zip(region.style_features, region.style_weights, strict=True):
            if weight is None:
                style_means.append(term.means(features))
                continue
            maps = {layer: layer_mask(weight.to(features[layer]), features[layer].shape[-2:])
                    for layer in self.layers}
            sums = term.statistics(features, maps)
            style_means.append({layer: value / _mass(maps[layer], value)
                                for layer, value in sums.items()})
        term.set_targets(style_means, region.style_blend)
        return term

    def place(self, where: Mapping[str, tuple[tuple[int, int], Where]] | None) -> None:
        """Which positions the next :meth:`statistics` call's features are: per layer the
        whole stage's ``(h, w)`` and the rows and columns of it the features cover (a tile's
        core); ``None``: the whole image."""
        self._where = dict(where) if where is not None else None

    def _mask(self, index: int, layer: str, features: torch.Tensor) -> torch.Tensor:
        """Region ``index``'s weights at ``layer`` for ``features`` ``(B, C, h, w)``."""
        if self._where is None:
            size, (rows, cols) = tuple(features.shape[-2:]), (slice(None), slice(None))
        else:
            size, (rows, cols) = self._where[layer]
        key = (index, layer, (int(size[0]), int(size[1])))
        if key not in self._masks:
            weight = self.regions[index][1]
            self._masks[key] = layer_mask(weight.to(features), size)
        return self._masks[key][..., rows, cols]

    def statistics(self, features: Mapping[str, torch.Tensor],
                   weights: Mapping[str, torch.Tensor] | None = None
                   ) -> dict[str, torch.Tensor]:
        """Unmasked: the wrapped term's. Masked: per layer ``(B, R, D + 1)``, each region's
        weighted sums of the statistic (flattened, ``D`` values) and the sum of its weights
        (times ``weights``, if given)."""
        if not self.masked:
            return self.inner.statistics(features, weights)
        batch = next(iter(features[layer] for layer in self.layers)).shape[0]
        packed: dict[str, list[torch.Tensor]] = {layer: [] for layer in self.layers}
        for index, (term, _) in enumerate(self.regions):
            maps = {}
            for layer in self.layers:
                mask = self._mask(index, layer, features[layer])
                if weights is not None and layer in weights:
                    mask = mask * weights[layer].to(mask)
                maps[layer] = mask
            sums = term.statistics(features, maps)
            for layer, value in sums.items():
                self._shapes[layer] = value.shape[1:]
                mass = maps[layer].flatten(1).sum(-1, keepdim=True).to(value)
                packed[layer].append(torch.cat([value.flatten(1), mass.expand(batch, 1)], 1))
        return {layer: torch.stack(values, 1) if values else
                features[layer].new_zeros(batch, 0, 1) for layer, values in packed.items()}

    def loss_from_means(self, means: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Unmasked: the wrapped term's. Masked: ``Σ_r L_r(m_r)`` with ``m_r`` each region's
        weighted means (its weighted sums over its weights: the division by the number of
        positions cancels); a region with no weight at a layer is left out."""
        if not self.masked:
            return self.inner.loss_from_means(means)
        total = sum(value.sum() for value in means.values()) * 0.0
        for index, (term, _) in enumerate(self.regions):
            own = {}
            for layer in self.layers:
                packed = means[layer][:, index]
                own[layer] = (packed[:, :-1] / packed[:, -1:].clamp_min(1e-12)).reshape(
                    -1, *self._shapes[layer])
            if all(bool((means[layer][:, index, -1] > 0).all()) for layer in self.layers):
                total = total + term.loss_from_means(own)
        return total  # type: ignore[return-value]

    def set_targets(self, style_means: Sequence[Mapping[str, torch.Tensor]],
                    blend: Sequence[float]) -> None:
        """Unmasked only: the wrapped term's (a masked term is prepared per region)."""
        if self.masked:
            raise RuntimeError("a masked GuidedStatistic is prepared with prepare(targets)")
        self.inner.set_targets(style_means, blend)

    def means(self, features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self.masked:
            return self.inner.means(features)
        return {layer: value / positions(features[layer])
                for layer, value in self.statistics(features).items()}

    def forward(self, image: torch.Tensor, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if not self.masked:
            return self.inner(image, features)
        return self.loss_from_means(self.means(features))


def _mass(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The sum of a ``(1, 1, h, w)`` mask, shaped to divide a ``(1, ...)`` statistic."""
    total = mask.sum().clamp_min(1e-12).to(like)
    return total.reshape((1,) * like.dim())
