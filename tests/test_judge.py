"""The judged distances of nstkit compare: known values, an independent formula, invariances."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch

from nstkit.judge import Judge, relative_content_distance, relative_gram_distance
from nstkit.testing import tiny_images


class Pixels:
    """An extractor whose only layer ``x`` is the image itself."""

    def __call__(self, image: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        return {layer: image for layer in layers}


def pixel_judge(size: int = 16) -> Judge:
    return Judge(Pixels(), size=size, content_layer="x", style_layers=("x",))


def test_content_distance_known_values(device, dtype):
    target = torch.rand(2, 4, 5, 6, device=device, dtype=dtype) + 0.1
    zero = relative_content_distance(target, target)
    half = relative_content_distance(0.5 * target, target)
    torch.testing.assert_close(zero, torch.zeros(2, device=device, dtype=dtype))
    torch.testing.assert_close(half, torch.full((2,), 0.5, device=device, dtype=dtype))
    assert relative_content_distance(torch.zeros_like(target), target).tolist() == [1.0, 1.0]


def test_gram_distance_matches_numpy(device, dtype):
    gen = torch.Generator().manual_seed(0)
    feats = torch.rand(3, 4, 5, 6, generator=gen, dtype=dtype)
    style = torch.rand(1, 4, 7, 3, generator=gen, dtype=dtype)
    target = (style.reshape(4, 21) @ style.reshape(4, 21).T / 21).unsqueeze(0)
    got = relative_gram_distance(feats.to(device), target.to(device)).cpu().numpy()
    expected = []
    for f in feats.numpy():
        flat = f.reshape(4, 30)
        g, a = flat @ flat.T / 30, target[0].numpy()
        expected.append(np.linalg.norm(g - a) / np.linalg.norm(a))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_gram_distance_of_constant_images():
    # F = a everywhere: G = a^2 (all ones); against b: |a^2 - b^2| / b^2
    feats, style = torch.full((1, 3, 4, 4), 0.5), torch.full((1, 3, 2, 8), 1.0)
    dist = relative_gram_distance(feats, relative_gram_target(style))
    assert dist.item() == pytest.approx(0.75)


def relative_gram_target(style: torch.Tensor) -> torch.Tensor:
    flat = style.flatten(2)
    return flat @ flat.transpose(1, 2) / flat.shape[-1]


def test_distances_are_scale_free():
    gen = torch.Generator().manual_seed(1)
    feats, target = torch.rand(1, 4, 6, 6, generator=gen), torch.rand(1, 4, 6, 6, generator=gen)
    torch.testing.assert_close(relative_content_distance(7 * feats, 7 * target),
                               relative_content_distance(feats, target))
    gram = relative_gram_target(target)
    torch.testing.assert_close(relative_gram_distance(3 * feats, 9 * gram),
                               relative_gram_distance(feats, gram))


def test_judge_identical_images_score_zero():
    images = tiny_images(16)
    content, style = images.content, images.style
    judge = pixel_judge()
    assert judge(content, content, style).content == 0.0
    assert judge(style, content, style).style == pytest.approx(0.0, abs=1e-7)


def test_judge_resizes_output_and_style_to_its_size():
    images = tiny_images(16)
    content, style = images.content, images.style
    judge = pixel_judge(size=16)
    twice = {"scale_factor": 2, "mode": "nearest"}
    big_output = torch.nn.functional.interpolate(content, **twice)
    big_style = torch.nn.functional.interpolate(style, **twice)
    # both are judged at 16 px: the upsampled copies score almost like the originals
    assert judge(big_output, content, style).content < 0.05
    assert judge(content, content, big_style).style == pytest.approx(
        judge(content, content, style).style, rel=0.05)


def test_judge_caches_style_grams_by_key():
    images = tiny_images(16)
    content, style = images.content, images.style
    judge = pixel_judge()
    first = judge(content, content, style, style_key="s").style
    # a different image under the same key reuses the cached Grams
    assert judge(content, content, content, style_key="s").style == first
    assert judge(content, content, content).style == pytest.approx(0.0, abs=1e-7)


@pytest.mark.slow
def test_vgg_judge_on_real_images(tiny):
    content, style = tiny / "content" / "coffee.png", tiny / "style" / "starry_night.png"
    judge = Judge(size=64)
    assert judge(content, content, style).content == 0.0
    itself = judge(style, content, style)
    assert itself.style == pytest.approx(0.0, abs=1e-5)
    # the content image is far from the style's Grams, the style image far from the content
    as_content = judge(content, content, style)
    assert as_content.style > 0.3
    assert itself.content > 0.3
