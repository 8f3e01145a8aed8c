"""A tiled stage's targets: whole-image features and statistics computed tile by tile.

Nothing image-sized at a layer is built unless a term asks for it: the content's features are
stitched from tiles on first access (a content loss reads one layer), and a
:class:`~nstkit.losses.StatisticLoss` gets its style targets from sums over the style's tiles,
never from the style's whole feature maps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

from nstkit.losses import StatisticLoss, Targets
from nstkit.losses.base import PLACE_FIELDS, Recording, fit_guides
from nstkit.losses.guided import GuidedStatistic
from nstkit.optimisation import WeightedTerm, extract
from nstkit.tiling.grid import Tile, TileGrid, crop


class StitchedFeatures(Mapping[str, torch.Tensor]):
    """An image's features ``(B, C, H // stride, W // stride)`` per layer, each computed on
    first access by a no-grad pass over ``grid``'s tiles (the cores' parts, put together)."""

    def __init__(self, extractor: Any, image: torch.Tensor, grid: TileGrid,
                 strides: Mapping[str, int], precision: str = "fp32") -> None:
        self.extractor, self.image, self.grid = extractor, image, grid
        self.strides, self.precision = dict(strides), precision
        self._done: dict[str, torch.Tensor] = {}

    def __getitem__(self, layer: str) -> torch.Tensor:
        if layer not in self.strides:
            raise KeyError(layer)
        if layer not in self._done:
            self._done[layer] = self._stitch(layer)
        return self._done[layer]

    def __iter__(self) -> Iterator[str]:
        return iter(self.strides)

    def __len__(self) -> int:
        return len(self.strides)

    @torch.no_grad()
    def _stitch(self, layer: str) -> torch.Tensor:
        stride, out = self.strides[layer], None
        for tile in self.grid:
            window = self.image[..., tile.window[0], tile.window[1]]
            part = crop(extract(self.extractor, window, [layer], self.precision), tile,
                        {layer: stride})[layer]
            if out is None:
                out = part.new_zeros(*part.shape[:2], self.grid.height // stride,
                                     self.grid.width // stride)
            rows, cols = (slice(s.start // stride, s.stop // stride) for s in tile.core)
            out[..., rows, cols] = part
        assert out is not None
        return out


class TileFeatures(Mapping[str, torch.Tensor]):
    """The part of whole-image features under one tile's core, per layer (cropped on access)."""

    def __init__(self, whole: Mapping[str, torch.Tensor], tile: Tile,
                 strides: Mapping[str, int]) -> None:
        self.whole, self.tile, self.strides = whole, tile, strides

    def __getitem__(self, layer: str) -> torch.Tensor:
        stride = self.strides[layer]
        rows, cols = (slice(s.start // stride, s.stop // stride) for s in self.tile.core)
        return self.whole[layer][..., rows, cols]

    def __iter__(self) -> Iterator[str]:
        return iter(self.whole)

    def __len__(self) -> int:
        return len(self.whole)


def tiled_targets(extractor: Any, content: torch.Tensor, styles: Sequence[torch.Tensor],
                  blend: Sequence[float], grids: Sequence[TileGrid],
                  strides: Mapping[str, int], precision: str,
                  guides: Mapping[str, torch.Tensor] | None = None) -> Targets:
    """Targets whose features are stitched on access; ``grids`` is the content's grid, then
    one per style image; ``guides`` resized to the content's size."""
    return Targets(
        content_image=content,
        content_features=StitchedFeatures(extractor, content, grids[0], strides, precision),
        style_images=list(styles),
        style_features=[StitchedFeatures(extractor, style, grid, strides, precision)
                        for style, grid in zip(styles, grids[1:], strict=True)],
        style_blend=list(blend), guides=fit_guides(guides, content))


def tile_targets(targets: Targets, tile: Tile, strides: Mapping[str, int]) -> Targets:
    """The targets under ``tile``'s core: the content's pixels, features, guides and region
    weights there; the styles whole."""
    rows, cols = tile.core
    regions = None if targets.regions is None else [
        dataclasses.replace(region, weight=region.weight[..., rows, cols])
        for region in targets.regions]
    return Targets(content_image=targets.content_image[..., rows, cols],
                   content_features=TileFeatures(targets.content_features, tile, strides),
                   style_images=targets.style_images, style_features=targets.style_features,
                   style_blend=targets.style_blend,
                   guides={name: guide[..., rows, cols] for name, guide in
                           targets.guides.items()}, regions=regions)


def grid_like(grid: TileGrid, image: torch.Tensor) -> TileGrid:
    """A grid of ``grid``'s tiles, overlap and alignment over ``image`` ``(..., H, W)``."""
    return TileGrid(image.shape[-2], image.shape[-1], grid.tile, grid.overlap, grid.align)


def locate(terms: Sequence[Any], grid: TileGrid, tile: Tile | None,
           strides: Mapping[str, int]) -> None:
    """Tell each :class:`GuidedStatistic` of ``terms`` which positions of every layer the
    next features cover: ``tile``'s core within ``grid`` (``None``: the whole image)."""
    guided = [t for t in terms if isinstance(t, GuidedStatistic)]
    if not guided:
        return
    where = None if tile is None else {
        layer: ((grid.height // stride, grid.width // stride),
                tuple(slice(s.start // stride, s.stop // stride) for s in tile.core))
        for layer, stride in strides.items()}
    for term in guided:
        term.place(where)  # type: ignore[arg-type]


@torch.no_grad()
def statistic_means(terms: Sequence[StatisticLoss], extractor: Any, image: torch.Tensor,
                    grid: TileGrid, strides: Mapping[str, int], layers: Sequence[str],
                    precision: str) -> tuple[list[dict[str, torch.Tensor]], dict[str, int]]:
    """Each term's means over the whole ``image``, summed over ``grid``'s tiles, and each
    layer's number of positions."""
    sums: list[dict[str, torch.Tensor]] = [{} for _ in terms]
    counts: dict[str, int] = {}
    for tile in grid:
        window = image[..., tile.window[0], tile.window[1]]
        features = crop(extract(extractor, window, layers, precision), tile, strides)
        for layer, value in features.items():
            counts[layer] = counts.get(layer, 0) + value.shape[-2] * value.shape[-1]
        locate(terms, grid, tile, strides)
        for total, term in zip(sums, terms, strict=True):
            for key, value in term.statistics(features).items():
                total[key] = total[key] + value if key in total else value
    locate(terms, grid, None, strides)
    return [{key: value / counts[key] for key, value in total.items()} for total in sums], counts


def prepare_tiled(terms: Sequence[WeightedTerm], targets: Targets | Sequence[Targets],
                  extractor: Any, grids: Sequence[TileGrid], strides: Mapping[str, int],
                  layers: Sequence[str], precision: str) -> set[int]:
    """Prepare every term for a tiled stage; return the indices of the terms whose targets
    depend on where they are (their ``prepare`` read the content, the guides or the regions),
    to be prepared per tile.

    ``targets``: the stage's, or one per term (terms reading their own styles or regions).
    A :class:`StatisticLoss` gets its targets from the styles' statistics summed over tiles
    (``grids``: the content's, then one per style image of the stage's targets; other style
    images get a grid like the content's); a masked :class:`GuidedStatistic` is prepared with
    its targets (the regions' styles stitched on access), and any other term too.
    """
    own = [targets] * len(terms) if isinstance(targets, Targets) else list(targets)
    base = targets if isinstance(targets, Targets) else None
    known = {id(image): grid for image, grid in zip(base.style_images if base else [],
                                                    grids[1:], strict=False)}
    groups: dict[int, list[int]] = {}
    for index, term in enumerate(terms):
        module = term.module
        if isinstance(module, StatisticLoss) and own[index].regions is None:
            groups.setdefault(id(own[index]), []).append(index)
    for indices in groups.values():
        view, statistic = own[indices[0]], [terms[i].module for i in indices]
        per_style = [statistic_means(statistic, extractor, style,  # type: ignore[arg-type]
                                     known.get(id(style)) or grid_like(grids[0], style),
                                     strides, layers, precision)[0]
                     for style in view.style_images]
        for index, term in enumerate(statistic):
            term.set_targets([means[index] for means in per_style],  # type: ignore[attr-defined]
                             view.style_blend)
    positional = set()
    for index, term in enumerate(terms):
        if isinstance(term.module, StatisticLoss):
            if own[index].regions is not None:
                term.module.prepare(own[index])
            continue
        recording = Recording(own[index])
        term.module.prepare(recording)  # type: ignore[arg-type]
        if recording.read & PLACE_FIELDS:
            positional.add(index)
    return positional
