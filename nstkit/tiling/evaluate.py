"""The loss and gradient of a whole image computed one tile at a time.

Per evaluation (one per closure call; the grid moves once per optimiser step):

1. ``style: global`` with :class:`~nstkit.losses.StatisticLoss` terms: a no-grad pass over the
   tiles sums each term's statistics over the cores, giving the whole image's means ``m``;
   the term's value ``L(m)`` and ``dL/dm`` follow at once.
2. A pass with gradients: per tile, the extractor runs on the window; the features under the
   core give each statistic term's share, backpropagated as ``<dL/dm, s_tile / positions>``
   (whose gradient is the tile's part of ``dL/dimage``), and every other term is evaluated on
   the core (re-targeted to the tile if its targets are positional) weighted by the core's
   share of the pixels. The window's gradient is added into ``image.grad``.

Memory is one window's forward and backward plus image-sized buffers. The gradient equals the
whole image's when the overlap covers the deepest layer's receptive field; with less, features
near a window's inner edges see zero padding instead of their neighbours (random grid offsets
move that error around, so it does not settle into seams).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from nstkit.losses import StatisticLoss, Targets
from nstkit.optimisation import WeightedTerm, check_scalar, extract, start_terms
from nstkit.tiling.grid import Tile, TileGrid, crop
from nstkit.tiling.targets import locate, statistic_means

TileTargets = Callable[[Tile], Targets]
TermTileTargets = Callable[[int, Tile], Targets]


class TiledImage:
    """An evaluator (see :class:`nstkit.optimisation.Evaluator`) over ``grid``'s tiles.

    Args:
        terms: the prepared terms (see :func:`nstkit.tiling.targets.prepare_tiled`).
        extractor, layers, precision: as for :func:`nstkit.optimisation.optimise`.
        grid: the tiles at offset 0; each step uses it shifted at random (``generator``).
        strides: each layer's stride in pixels.
        style: ``"global"`` (whole-image statistics) or ``"local"`` (each tile's).
        positional: indices of terms to prepare per tile with ``tile_targets(tile)``.
        memory_format: the windows' memory format (channels-last on CUDA).
        term_tile_targets: ``(index, tile)`` -> the targets to prepare positional term
            ``index`` with (terms with targets of their own); else ``tile_targets(tile)``.
    """

    def __init__(self, terms: Sequence[WeightedTerm], extractor: Any, layers: Sequence[str],
                 precision: str, grid: TileGrid, strides: Mapping[str, int], style: str,
                 generator: torch.Generator | None = None, positional: set[int] | None = None,
                 tile_targets: TileTargets | None = None,
                 memory_format: torch.memory_format = torch.contiguous_format,
                 term_tile_targets: TermTileTargets | None = None) -> None:
        self.terms, self.extractor, self.layers = list(terms), extractor, list(layers)
        self.precision, self.base, self.grid = precision, grid, grid
        self.strides, self.generator = dict(strides), generator
        self.positional, self.tile_targets = positional or set(), tile_targets
        self.memory_format = memory_format
        self.term_tile_targets = term_tile_targets
        self.statistic = [i for i, t in enumerate(self.terms)
                          if style == "global" and isinstance(t.module, StatisticLoss)]

    def start_step(self, step: int) -> None:
        """Shift the grid at random (the same grid for every evaluation within a step) and
        pass the step on to every term (:meth:`nstkit.losses.LossTerm.start_step`)."""
        start_terms(self.terms, step)
        if self.generator is not None:
            self.grid = self.base.shifted(self.generator)

    def _window(self, image: torch.Tensor, tile: Tile, grad: bool) -> torch.Tensor:
        window = image.detach()[..., tile.window[0], tile.window[1]]
        return window.contiguous(memory_format=self.memory_format).requires_grad_(grad)

    def _features(self, window: torch.Tensor, tile: Tile) -> dict[str, torch.Tensor]:
        return crop(extract(self.extractor, window, self.layers, self.precision), tile,
                    self.strides)

    def _global_values(self, image: torch.Tensor, backward: bool
                       ) -> tuple[dict[int, torch.Tensor], dict[int, dict[str, torch.Tensor]],
                                  dict[str, int]]:
        """Each statistic term's weighted value and ``dL/dm`` per key, from the whole image."""
        values: dict[int, torch.Tensor] = {}
        slopes: dict[int, dict[str, torch.Tensor]] = {}
        if not self.statistic:
            return values, slopes, {}
        modules = [self.terms[i].module for i in self.statistic]
        all_means, counts = statistic_means(modules, self.extractor, image.detach(), self.grid,
                                            self.strides, self.layers, self.precision)
        for index, means in zip(self.statistic, all_means, strict=True):
            term = self.terms[index]
            leaves = {k: v.detach().requires_grad_(backward) for k, v in means.items()}
            with torch.enable_grad():
                value = term.weight * check_scalar(term, term.module.loss_from_means(leaves))
            if backward and value.requires_grad:
                grads = torch.autograd.grad(value, list(leaves.values()), allow_unused=True)
                slopes[index] = {k: g for k, g in zip(leaves, grads, strict=True)
                                 if g is not None}
            values[index] = value.detach()
        return values, slopes, counts

    def __call__(self, image: torch.Tensor, backward: bool = True) -> list[torch.Tensor]:
        values, slopes, counts = self._global_values(image, backward)
        local = [i for i in range(len(self.terms)) if i not in values]
        sums = {i: image.new_zeros(()) for i in local}
        if backward:
            image.grad = torch.zeros_like(image)
        if local or backward:
            for tile in self.grid:
                self._tile(image, tile, backward, local, sums, slopes, counts)
            locate([t.module for t in self.terms], self.grid, None, self.strides)
        ordered = [values[i] if i in values else sums[i] for i in range(len(self.terms))]
        return [*ordered, torch.stack(ordered).sum()]

    def _tile(self, image: torch.Tensor, tile: Tile, backward: bool, local: list[int],
              sums: dict[int, torch.Tensor], slopes: dict[int, dict[str, torch.Tensor]],
              counts: dict[str, int]) -> None:
        """One tile's pass: local terms' shares into ``sums``, its gradient into image.grad."""
        window = self._window(image, tile, backward)
        share = tile.pixels / (image.shape[-2] * image.shape[-1])
        locate([t.module for t in self.terms], self.grid, tile, self.strides)
        with torch.set_grad_enabled(backward):
            features = self._features(window, tile)
            rows, cols = tile.image_core()
            core = window[..., rows, cols]
            surrogate = window.new_zeros(())
            for index, slope in slopes.items():
                stats = self.terms[index].module.statistics(features)
                surrogate = surrogate + sum((slope[k] * stats[k]).sum() / counts[k]
                                            for k in slope)
            for index in local:
                term = self.terms[index]
                if index in self.positional and self.term_tile_targets is not None:
                    term.module.prepare(self.term_tile_targets(index, tile))
                elif index in self.positional and self.tile_targets is not None:
                    term.module.prepare(self.tile_targets(tile))
                value = share * term.weight * check_scalar(term, term.module(core, features))
                sums[index] = sums[index] + value.detach()
                surrogate = surrogate + value
        if backward and surrogate.requires_grad:
            surrogate.backward()
            assert window.grad is not None
            assert image.grad is not None
            image.grad[..., tile.window[0], tile.window[1]] += window.grad
