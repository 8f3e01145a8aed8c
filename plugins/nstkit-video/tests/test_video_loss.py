"""The temporal loss: its numbers, its contract, its registration."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

pytest.importorskip("nstkit_video", reason="nstkit-video is not installed: "
                    "pip install -e plugins/nstkit-video")

from nstkit_video import plugin as video_plugin
from nstkit_video.loss import GUIDE_TARGET, GUIDE_WEIGHTS, TemporalLoss, temporal_loss

from nstkit.errors import RecipeError
from nstkit.losses import Targets
from nstkit.recipe import load_recipe
from nstkit.testing import check_loss, make_host, modules_after, stylize_tiny


def _guides(size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    weights = (torch.rand(1, 1, size, size, generator=generator) > 0.3).float()
    return {GUIDE_TARGET: torch.rand(1, 3, size, size, generator=generator),
            GUIDE_WEIGHTS: weights}


def test_value_by_hand():
    image = torch.tensor([[[[0.5, 1.0]], [[0.0, 0.0]]]])  # (1, 2, 1, 2)
    target = torch.tensor([[[[0.0, 0.0]], [[1.0, 0.5]]]])
    weights = torch.tensor([[[[1.0, 0.0]]]])  # the second pixel is occluded
    # (0.5² + 1²) at the first pixel, over D = 1·2·1·2 = 4 values
    assert temporal_loss(image, target, weights).item() == pytest.approx((0.25 + 1.0) / 4)


def test_zero_at_the_target_and_where_every_pixel_is_occluded():
    guides = _guides()
    target, weights = guides[GUIDE_TARGET], guides[GUIDE_WEIGHTS]
    assert temporal_loss(target, target, weights).item() == 0
    assert temporal_loss(torch.rand(1, 3, 32, 32), target, weights * 0).item() == 0


def test_gradient_is_the_masked_difference():
    image = torch.rand(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    target = torch.rand(1, 3, 5, 6, dtype=torch.float64)
    weights = torch.rand(1, 1, 5, 6, dtype=torch.float64)
    torch.autograd.gradcheck(lambda x: temporal_loss(x, target, weights), (image,))
    temporal_loss(image, target, weights).backward()
    expected = 2 * weights * (image.detach() - target) / image.numel()
    torch.testing.assert_close(image.grad, expected)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match=r"weights \(1, 3, 4, 4\) \(B, 1, H, W\)"):
        temporal_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))


def test_keeps_the_loss_contract():
    check_loss(TemporalLoss, guides=_guides(8))


def test_without_guides_it_is_zero():
    term = TemporalLoss()
    term.prepare(Targets(torch.zeros(1, 3, 4, 4), {}, [], [], []))
    image = torch.rand(1, 3, 4, 4, requires_grad=True)
    value = term(image, {})
    assert value.item() == 0
    value.backward()
    assert image.grad is not None
    assert not image.grad.any()


def test_one_guide_without_the_other_is_refused():
    term = TemporalLoss()
    with pytest.raises(ValueError, match="needs both guides"):
        term.prepare(Targets(torch.zeros(1, 3, 4, 4), {}, [], [], [],
                             guides={GUIDE_TARGET: torch.zeros(1, 3, 4, 4)}))


def test_refuses_layers():
    with pytest.raises(ValueError, match="reads the image, not extractor layers"):
        TemporalLoss(layers=["relu1_1"])


def test_registered_and_pulls_the_stylisation_to_its_target():
    host = make_host(video_plugin)
    assert host.losses.entry("temporal").plugin == "nstkit_video.plugin"
    grey = {GUIDE_TARGET: torch.full((1, 3, 32, 32), 0.5), GUIDE_WEIGHTS: torch.ones(1, 1, 32, 32)}
    losses = [{"name": "content"}, {"name": "temporal", "weight": 1e4}]
    pulled = stylize_tiny(host, iterations=5, losses=losses, guides=grey)
    free = stylize_tiny(host, iterations=5, losses=losses)
    assert (pulled.image - 0.5).abs().mean() < 0.5 * (free.image - 0.5).abs().mean()
    assert pulled.history["temporal"][-1] < pulled.history["temporal"][0]
    assert free.history["temporal"] == [0.0] * 6


def test_recipes_can_use_it_and_its_options_are_checked(tmp_path: Path):
    recipe = {"version": 1, "extends": "gatys", "losses": [
        {"name": "content"}, {"name": "gram", "weight": 1e-3},
        {"name": "temporal", "weight": 100}]}
    path = tmp_path / "video.yaml"
    path.write_text(yaml.safe_dump(recipe))
    host = make_host(video_plugin)
    loaded = load_recipe(path, host=host)
    assert [term.name for term in loaded.config.losses] == ["content", "gram", "temporal"]
    recipe["losses"][2]["layers"] = ["relu1_1"]
    path.write_text(yaml.safe_dump(recipe))
    with pytest.raises(RecipeError, match=r"losses\[2\]\.layers"):
        load_recipe(path, host=host)


@pytest.mark.slow
def test_the_entry_point_imports_no_torch():
    assert modules_after("import nstkit_video.plugin", ("torch", "cv2", "av", "numpy")) == []
