"""Tile geometry: square windows whose cores partition an image, aligned to feature strides.

A tile's *window* is what the extractor sees; its *core* is the part whose features the tile
contributes (the window less ``overlap`` px of context on each inner side). Cores partition
the image, so sums over tiles' cores are sums over the image. Every core and window starts at a
multiple of ``align`` (the extractor's largest stride), so a window's features line up with the
whole image's: position ``j`` of a window starting at ``x`` is position ``x / stride + j`` of
the whole image's features at that layer.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch

Region = tuple[slice, slice]


@dataclass(frozen=True)
class Tile:
    """One tile, in image pixels: ``window`` (what the extractor sees) contains ``core``."""

    window: Region
    core: Region

    def core_at(self, stride: int) -> Region:
        """The core's positions in the window's features at a layer of ``stride`` px."""
        return tuple(slice((c.start - w.start) // stride, (c.stop - w.start) // stride)
                     for c, w in zip(self.core, self.window, strict=True))  # type: ignore[return-value]

    def image_core(self) -> Region:
        """The core's pixels within the window."""
        return self.core_at(1)

    @property
    def pixels(self) -> int:
        """Pixels in the core."""
        return (self.core[0].stop - self.core[0].start) * (self.core[1].stop - self.core[1].start)


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


@dataclass(frozen=True)
class TileGrid:
    """Tiles of side at most ``tile`` px (``tile + align - 1`` where a last core thinner than
    ``align`` joins its neighbour) covering a ``height x width`` image.

    ``overlap`` and the core side ``tile - 2 * overlap`` are rounded to multiples of ``align``
    (overlap up, core down). ``offset = (dy, dx)`` shifts the grid: the first core of each axis
    ends at the offset (when it is not 0), so the borders between cores move with it.
    """

    height: int
    width: int
    tile: int
    overlap: int
    align: int = 1
    offset: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        if self.core < self.align:
            raise ValueError(f"tile {self.tile} px with overlap {self.overlap} px leaves no "
                             f"core of at least {self.align} px (the extractor's stride)")

    @property
    def context(self) -> int:
        """The overlap, rounded up to the alignment."""
        return _round_up(self.overlap, self.align)

    @property
    def core(self) -> int:
        """The core side: ``tile - 2 * context`` rounded down to the alignment."""
        return (self.tile - 2 * self.context) // self.align * self.align

    def _spans(self, length: int, offset: int) -> list[tuple[int, int]]:
        cuts = [0, *range(offset % self.core or self.core, length, self.core), length]
        if len(cuts) > 2 and cuts[-1] - cuts[-2] < self.align:
            del cuts[-2]  # a last sliver thinner than the stride joins its neighbour
        return [(a, b) for a, b in itertools.pairwise(cuts) if b > a]

    def __iter__(self) -> Iterator[Tile]:
        for y0, y1 in self._spans(self.height, self.offset[0]):
            for x0, x1 in self._spans(self.width, self.offset[1]):
                window = (slice(max(0, y0 - self.context), min(self.height, y1 + self.context)),
                          slice(max(0, x0 - self.context), min(self.width, x1 + self.context)))
                yield Tile(window, (slice(y0, y1), slice(x0, x1)))

    def __len__(self) -> int:
        return len(self._spans(self.height, self.offset[0])) * \
            len(self._spans(self.width, self.offset[1]))

    def shifted(self, generator: torch.Generator) -> TileGrid:
        """The same grid at a random offset (a multiple of ``align`` below the core side)."""
        steps = self.core // self.align
        dy, dx = (int(torch.randint(steps, (1,), generator=generator)) * self.align
                  for _ in range(2))
        return TileGrid(self.height, self.width, self.tile, self.overlap, self.align, (dy, dx))

    def borders(self) -> tuple[list[int], list[int]]:
        """The rows and columns where one core ends and the next begins."""
        rows = [b for _, b in self._spans(self.height, self.offset[0])][:-1]
        cols = [b for _, b in self._spans(self.width, self.offset[1])][:-1]
        return rows, cols


def crop(features: Mapping[str, torch.Tensor], tile: Tile,
         strides: Mapping[str, int]) -> dict[str, torch.Tensor]:
    """The core's part of a window's features ``(B, C, h, w)``, per layer."""
    out = {}
    for layer, value in features.items():
        rows, cols = tile.core_at(strides[layer])
        out[layer] = value[..., rows, cols]
    return out


def layer_strides(extractor: torch.nn.Module, layers: list[str], probe: int = 512
                  ) -> dict[str, int]:
    """Each layer's stride in pixels, traced on the ``meta`` device (no compute).

    Raises:
        ValueError: a layer's size is not the input's divided by a whole number (such an
            extractor cannot be tiled).
    """
    from nstkit.memory import meta_copy

    with torch.no_grad():
        features = meta_copy(extractor)(torch.empty(1, 3, probe, probe, device="meta"), layers)
    strides = {}
    for layer, value in features.items():
        size = value.shape[-1]
        if not size or probe % size:
            raise ValueError(f"layer {layer!r} has {size} positions for {probe} px: not a whole "
                             f"stride, so this extractor cannot be tiled")
        strides[layer] = probe // size
    return strides
