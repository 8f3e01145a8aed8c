"""``stylize(guides=...)``: per-job images handed to the loss terms through ``Targets.guides``
(resized per stage, cropped per tile), and ``check_loss(guides=...)``."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import torch

import nstkit
from nstkit.losses import LossTerm, Targets
from nstkit.losses.base import fit_guides
from nstkit.testing import TinyExtractor, check_loss, make_host, stylize_tiny, tiny_images
from nstkit.tiling.grid import TileGrid, layer_strides
from nstkit.tiling.targets import prepare_tiled, tile_targets, tiled_targets


class TowardsGuide(LossTerm):
    """Mean squared distance of the image to the guide ``target`` (zero without one); keeps
    the shape of every guide it was prepared with in ``seen``."""

    reads_style = False

    def __init__(self, layers: None = None) -> None:
        super().__init__({})
        self.target: torch.Tensor | None = None
        self.seen: list[tuple[int, ...]] = []

    def prepare(self, targets: Targets) -> None:
        self.target = targets.guides.get("target")
        if self.target is not None:
            self.seen.append(tuple(self.target.shape))

    def forward(self, image: torch.Tensor, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if self.target is None:
            return image.sum() * 0
        return (image - self.target).pow(2).mean()


def _host_with(term: TowardsGuide) -> nstkit.plugins.PluginHost:
    class Plugin:
        @nstkit.hookimpl
        def register_losses(self, register):
            register("towards", lambda layers=None: term)

    return make_host(Plugin())


def test_fit_guides_resizes_to_the_content_and_keeps_values():
    content = torch.zeros(2, 3, 8, 12, dtype=torch.float64)
    flat = torch.full((1, 1, 16, 24), 3.0)  # not clamped to [0, 1]
    fitted = fit_guides({"flat": flat, "same": torch.ones(2, 2, 8, 12)}, content)
    assert fitted["flat"].shape == (1, 1, 8, 12)
    assert fitted["flat"].dtype == torch.float64
    torch.testing.assert_close(fitted["flat"], torch.full((1, 1, 8, 12), 3.0,
                                                          dtype=torch.float64))
    assert fitted["same"].shape == (2, 2, 8, 12)
    assert fit_guides(None, content) == {}


@pytest.mark.parametrize("guide", [torch.zeros(3, 8, 8), torch.zeros(3, 1, 8, 8), "image"])
def test_fit_guides_refuses_what_is_not_a_batch_of_images(guide):
    with pytest.raises(ValueError, match=r"guide 'bad' must be a \(1 or 2, C, H, W\) tensor"):
        fit_guides({"bad": guide}, torch.zeros(2, 3, 8, 8))


def test_stylize_hands_guides_to_the_terms_at_every_stage_size():
    term = TowardsGuide()
    grey = torch.full((1, 3, 32, 32), 0.5)
    result = stylize_tiny(_host_with(term), iterations=4, guides={"target": grey},
                          losses=[{"name": "towards", "weight": 1.0}],
                          multiscale={"scales": [0.5, 1.0], "iterations": [2, 2]})
    assert term.seen == [(1, 3, 16, 16), (1, 3, 32, 32)]
    start = (tiny_images(32).content - 0.5).pow(2).mean()
    assert (result.image - 0.5).pow(2).mean() < 0.5 * start


def test_without_guides_the_targets_have_none():
    term = TowardsGuide()
    stylize_tiny(_host_with(term), iterations=1,
                 losses=[{"name": "content"}, {"name": "towards", "weight": 1.0}])
    assert term.seen == []
    assert term.target is None


def test_a_term_reading_guides_is_prepared_per_tile_with_its_crop():
    extractor = TinyExtractor()
    content = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    guide = torch.rand(1, 1, 96, 128, generator=torch.Generator().manual_seed(1))
    term = TowardsGuide()
    terms = [nstkit.optimisation.WeightedTerm("towards", 1.0, term)]
    strides = layer_strides(extractor, ["relu1_1"])
    grids = [TileGrid(96, 128, 64, 16, 16), TileGrid(96, 128, 64, 16, 16)]
    targets = tiled_targets(extractor, content, [content], [1.0], grids, strides, "fp32",
                            {"target": guide})
    assert prepare_tiled(terms, targets, extractor, grids, strides, ["relu1_1"], "fp32") == {0}
    tile = list(grids[0])[3]
    part = tile_targets(targets, tile, strides)
    torch.testing.assert_close(part.guides["target"], guide[..., tile.core[0], tile.core[1]])


def test_check_loss_passes_guides_to_prepare():
    check_loss(TowardsGuide, guides={"target": torch.full((1, 3, 8, 8), 0.25)})
    with pytest.raises(AssertionError, match="gradient with respect to the image is zero"):
        check_loss(TowardsGuide)  # no guide: the term is zero
