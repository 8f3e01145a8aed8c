"""Applying a trained network: any image size, in tiles when an image is large.

The network is fully convolutional, so an image of any size goes through whole. An image of
more than ``tile x tile`` pixels goes through in overlapping tiles: each tile's outer margin
(the network's receptive radius, where its padding differs from the whole image's) is thrown
away and the cores are put together. Instance normalisation would give each tile its own
statistics (visible seams), so a first pass over the tiles accumulates every layer's
statistics and a second pass uses those for every tile. With the whole image's statistics the
tiles reproduce the whole image's output exactly (to rounding); with the tiles' accumulated
ones they are close, and seamless.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from nstkit import colour
from nstkit_fast.network import (
    TransformNet,
    fixed_statistics,
    pad_input,
    receptive_radius,
    recorded_statistics,
)

PRESERVE_COLOUR = ("luminance", "linear", "histogram")
DEFAULT_TILE = 1024


def windows(length: int, tile: int, margin: int) -> Iterator[tuple[slice, slice]]:
    """Along one axis of ``length`` (a multiple of 4): ``(window, core)`` pairs, the core
    relative to the whole axis; cores partition ``[0, length)``, each window is its core plus
    up to ``margin`` on each side, and every start is a multiple of 4. A core is at least
    ``2 * margin`` long (a tile smaller than ``4 * margin`` would mostly be margin)."""
    core = max(2 * margin, tile - 2 * margin) // 4 * 4
    for start in range(0, length, core):
        stop = min(length, start + core)
        yield slice(max(0, start - margin), min(length, stop + margin)), slice(start, stop)


def tiles(height: int, width: int, tile: int, margin: int
          ) -> list[tuple[tuple[slice, slice], tuple[slice, slice]]]:
    """Every ``((rows, cols) window, (rows, cols) core)`` of a ``height x width`` image."""
    return [((wr, wc), (cr, cc)) for wr, cr in windows(height, tile, margin)
            for wc, cc in windows(width, tile, margin)]


def _through_tiles(net: TransformNet, image: torch.Tensor, tile: int) -> torch.Tensor:
    """``net(image)`` tile by tile, every tile with the statistics already recorded."""
    padded = pad_input(image)  # as the network pads it
    out = torch.empty_like(padded)
    margin = receptive_radius(net.settings)
    with fixed_statistics(net):
        for (rows, cols), (core_rows, core_cols) in tiles(*padded.shape[-2:], tile, margin):
            part = net(padded[..., rows, cols])
            out[..., core_rows, core_cols] = part[..., core_rows.start - rows.start:
                                                  core_rows.stop - rows.start,
                                                  core_cols.start - cols.start:
                                                  core_cols.stop - cols.start]
    return out[..., :image.shape[-2], :image.shape[-1]]


def tiled(net: TransformNet, image: torch.Tensor, tile: int = DEFAULT_TILE) -> torch.Tensor:
    """``net(image)`` for a large ``(1, 3, H, W)`` image, in tiles of at most ``tile`` px
    square, with statistics accumulated over the tiles (two passes).

    Shape:
        - image: ``(1, 3, H, W)``, RGB in ``[0, 1]``. Output: the same shape and range.
    """
    padded = pad_input(image)  # as the network pads it
    margin = receptive_radius(net.settings)
    with recorded_statistics(net):
        for (rows, cols), _ in tiles(*padded.shape[-2:], tile, margin):
            net(padded[..., rows, cols])
    return _through_tiles(net, image, tile)


def needs_tiles(image: torch.Tensor, tile: int | None) -> bool:
    """Whether ``image`` ``(B, 3, H, W)`` has more than ``tile x tile`` pixels."""
    return tile is not None and image.shape[-2] * image.shape[-1] > tile * tile


@torch.no_grad()
def stylise(net: TransformNet, image: torch.Tensor, *, tile: int | None = DEFAULT_TILE,
            preserve_colour: str | None = None) -> torch.Tensor:
    """Stylise a batch with a trained network.

    Args:
        net: the network, on the device ``image`` is on.
        image: ``(B, 3, H, W)``, RGB in ``[0, 1]``.
        tile: images of more than ``tile x tile`` pixels go through in tiles (see
            :func:`tiled`); ``None``: always whole.
        preserve_colour: ``luminance``: the output's luminance with the content's colours
            (Gatys et al. 2016's luminance-only transfer, applied after); ``linear`` or
            ``histogram``: the output's colours matched to the content's (mean and
            covariance, or per-channel histograms).

    Returns:
        ``(B, 3, H, W)``, RGB in ``[0, 1]``.
    """
    if preserve_colour is not None and preserve_colour not in PRESERVE_COLOUR:
        raise ValueError(f"preserve_colour must be one of {', '.join(PRESERVE_COLOUR)} or "
                         f"None, got {preserve_colour!r}")
    if needs_tiles(image, tile):
        assert tile is not None
        out = torch.cat([tiled(net, image[i:i + 1], tile) for i in range(image.shape[0])])
    else:
        out = net(image)
    out = out.float().clamp(0, 1)
    if preserve_colour == "luminance":
        out = colour.recombine_luminance(out, image.float())
    elif preserve_colour == "linear":
        out = torch.cat([colour.match_colour_linear(out[i:i + 1], image[i:i + 1].float())
                         for i in range(out.shape[0])])
    elif preserve_colour == "histogram":
        out = torch.cat([colour.match_colour_histogram(out[i:i + 1], image[i:i + 1].float())
                         for i in range(out.shape[0])])
    return out
