"""A tiled stage: its grids, targets and evaluator, from a stage's content and styles."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from nstkit.config import TilingConfig
from nstkit.losses import Targets
from nstkit.optimisation import WeightedTerm
from nstkit.tiling.evaluate import TiledImage
from nstkit.tiling.grid import TileGrid, layer_strides
from nstkit.tiling.targets import (
    StitchedFeatures,
    grid_like,
    prepare_tiled,
    tile_targets,
    tiled_targets,
)

Views = Callable[[Targets, Callable[[torch.Tensor], Mapping[str, torch.Tensor]]], list[Targets]]
"""``views(targets, features)``: one targets per term from the stage's (``features`` gives a
style image's features, stitched from tiles); see :meth:`nstkit.regions.Styling.stage_targets`."""


def needs_tiles(tiling: TilingConfig | None, shape: Sequence[int]) -> bool:
    """Whether a stage of ``(..., H, W)`` is tiled: when one tile cannot cover it."""
    return tiling is not None and max(shape[-2:]) > tiling.tile


def tiled_stage(terms: Sequence[WeightedTerm], extractor: Any, layers: Sequence[str],
                content: torch.Tensor, styles: Sequence[torch.Tensor], blend: Sequence[float],
                tiling: TilingConfig, precision: str, generator: torch.Generator,
                memory_format: torch.memory_format = torch.contiguous_format,
                guides: Mapping[str, torch.Tensor] | None = None,
                views: Views | None = None) -> tuple[Targets, TiledImage]:
    """Prepare ``terms`` for a tiled stage and return its targets and evaluator.

    Args:
        content: the stage's content ``(B, 3, H, W)``, RGB in ``[0, 1]``, on the device.
        styles: the stage's style images ``(1, 3, h, w)`` (each tiled on its own grid).
        generator: draws each step's grid offset.
        guides: the job's guides (:attr:`nstkit.losses.Targets.guides`), cropped per tile.
        views: the targets of each term, when the terms read different styles, scales or
            regions (default: every term reads the stage's targets).
    """
    strides = layer_strides(extractor, list(layers))
    align = max(strides.values(), default=1)
    grids = [TileGrid(image.shape[-2], image.shape[-1], tiling.tile, tiling.overlap, align)
             for image in (content, *styles)]
    targets = tiled_targets(extractor, content, styles, blend, grids, strides, precision,
                            guides)
    for term in terms:
        term.module.to(content.device)
    per_term = [targets] * len(terms) if views is None else views(
        targets, lambda image: StitchedFeatures(extractor, image, grid_like(grids[0], image),
                                                strides, precision))
    positional = prepare_tiled(terms, per_term, extractor, grids, strides, layers, precision)
    evaluate = TiledImage(terms, extractor, layers, precision, grids[0], strides, tiling.style,
                          generator, positional,
                          lambda tile: tile_targets(targets, tile, strides), memory_format,
                          lambda index, tile: tile_targets(per_term[index], tile, strides))
    return targets, evaluate
