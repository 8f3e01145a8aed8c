"""The judged distances of nstkit compare: known values, independent formulas, invariances."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch

from nstkit.judge import (
    METRICS,
    PALETTE_DIRECTIONS,
    QUANTILES,
    Judge,
    Scores,
    lab_pixels,
    orthonormal_directions,
    palette_distance,
    projected_quantiles,
    quantiles,
    relative_content_distance,
    relative_gram_distance,
    relative_sliced_distance,
    relative_w2_distance,
    sliced_squared,
    ssim_distance,
)
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
    itself = judge(style, style, style)
    assert isinstance(itself, Scores)
    assert tuple(itself.as_dict()) == METRICS
    for metric, value in itself.as_dict().items():
        assert value == pytest.approx(0.0, abs=1e-4), metric


def test_scores_are_frozen():
    scores = Scores(content=0.1, ssim=0.2, style=0.3, w2=0.4, sliced=0.5, palette=6.0)
    with pytest.raises(AttributeError):
        scores.style = 0.0  # type: ignore[misc]
    assert scores.as_dict()["palette"] == 6.0


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


def test_judge_caches_style_statistics_by_key():
    images = tiny_images(16)
    content, style = images.content, images.style
    judge = pixel_judge()
    first = judge(content, content, style, style_key="s")
    # a different image under the same key reuses every cached statistic
    assert judge(content, content, content, style_key="s") == first
    again = judge(content, content, content)
    assert again.style == pytest.approx(0.0, abs=1e-7)
    assert again.sliced == pytest.approx(0.0, abs=1e-7)
    assert again.palette == pytest.approx(0.0, abs=1e-4)


# --- SSIM --------------------------------------------------------------------------------------


def luma(rgb: np.ndarray) -> np.ndarray:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def reference_ssim(x: np.ndarray, y: np.ndarray, window: int = 11, sigma: float = 1.5) -> float:
    """Wang et al. 2004 by hand: Gaussian-weighted moments over every window that fits."""
    half = window // 2
    g = np.exp(-((np.arange(window) - half) ** 2) / (2 * sigma**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for i in range(x.shape[0] - window + 1):
        for j in range(x.shape[1] - window + 1):
            a, b = x[i:i + window, j:j + window], y[i:i + window, j:j + window]
            mx, my = (w * a).sum(), (w * b).sum()
            vx, vy = (w * a * a).sum() - mx**2, (w * b * b).sum() - my**2
            cxy = (w * a * b).sum() - mx * my
            values.append((2 * mx * my + c1) * (2 * cxy + c2)
                          / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_ssim_distance_of_an_image_to_itself_is_zero():
    image = tiny_images(16).content
    assert ssim_distance(image, image).item() == pytest.approx(0.0, abs=1e-6)


def test_ssim_distance_matches_a_hand_written_ssim():
    image = tiny_images(16).content.double()
    grey = torch.full_like(image, 0.5)
    expected = 1 - reference_ssim(luma(image[0].numpy()), luma(grey[0].numpy()))
    assert ssim_distance(image, grey).item() == pytest.approx(expected, rel=1e-6)
    assert 0.5 < expected < 1.5


def test_ssim_distance_of_flat_images_is_the_luminance_term():
    # no variance: SSIM = (2 a b + C1) / (a^2 + b^2 + C1), whatever the window
    a, b, c1 = 0.2, 0.7, 0.01**2
    dist = ssim_distance(torch.full((1, 3, 12, 12), a, dtype=torch.float64),
                         torch.full((1, 3, 12, 12), b, dtype=torch.float64))
    assert dist.item() == pytest.approx(1 - (2 * a * b + c1) / (a * a + b * b + c1), rel=1e-9)


def test_ssim_distance_of_a_small_image_uses_a_window_that_fits():
    image = tiny_images(16).content[..., :8, :]
    shifted = (image + 0.1).clamp(0, 1)
    assert 0 < ssim_distance(image, shifted).item() < 1


# --- palette -----------------------------------------------------------------------------------


def reference_lab(rgb: Sequence[float]) -> np.ndarray:
    """sRGB in [0, 1] -> CIELAB (D65, 2 degrees), from the standard formulas."""
    c = np.asarray(rgb, dtype=np.float64)
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124564, 0.3575761, 0.1804375],
                    [0.2126729, 0.7151522, 0.0721750],
                    [0.0193339, 0.1191920, 0.9503041]]) @ linear
    t = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def flat(rgb: Sequence[float], h: int = 8, w: int = 8) -> torch.Tensor:
    return torch.tensor(rgb, dtype=torch.float32).reshape(1, 3, 1, 1).expand(1, 3, h, w)


@pytest.mark.parametrize(("a", "b"), [((1, 0, 0), (0, 0, 1)), ((0.2, 0.6, 0.3), (0.9, 0.8, 0.1)),
                                      ((0, 0, 0), (1, 1, 1))])
def test_palette_distance_of_flat_colours_is_their_delta_e(a, b):
    delta_e = np.linalg.norm(reference_lab(a) - reference_lab(b))
    judge = pixel_judge()
    # different sizes: only the colour distributions count
    got = judge(flat(a, 16, 16), flat(a, 16, 16), flat(b, 12, 16)).palette
    assert got == pytest.approx(delta_e, rel=1e-4)


def test_palette_distance_of_a_shifted_palette_is_the_shift():
    gen = torch.Generator().manual_seed(3)
    pixels = torch.rand(1, 3, 24, 24, generator=gen)
    directions = orthonormal_directions(3, PALETTE_DIRECTIONS)
    shift = torch.tensor([4.0, -3.0, 12.0], dtype=torch.float64)
    lab = lab_pixels(pixels).double()
    target = projected_quantiles(lab + shift.reshape(1, 3, 1), directions)
    squared = sliced_squared(lab, directions, target)
    assert (3 * squared.mean()).sqrt().item() == pytest.approx(13.0, rel=1e-9)
    assert palette_distance(pixels, directions, projected_quantiles(lab, directions)).item() == \
        pytest.approx(0.0, abs=1e-3)


# --- sliced Wasserstein ------------------------------------------------------------------------


def test_orthonormal_directions_are_fixed_whole_frames():
    lab = orthonormal_directions(3, 48)
    assert lab.shape == (48, 3)
    torch.testing.assert_close(lab.T @ lab, 16 * torch.eye(3, dtype=torch.float64))
    wide = orthonormal_directions(100, 64)
    torch.testing.assert_close(wide @ wide.T, torch.eye(64, dtype=torch.float64))
    assert torch.equal(wide, orthonormal_directions(100, 64))
    assert not torch.equal(wide, orthonormal_directions(100, 64, seed=1))
    assert orthonormal_directions(5, 64).shape == (65, 5)  # 13 whole frames


def test_quantiles_read_the_sorted_samples():
    values = torch.randperm(8).double().reshape(1, 8)
    assert quantiles(values, 8).tolist() == [list(range(8))]
    # twice as many samples: each level falls halfway between two of them
    assert quantiles(torch.arange(16.0).flip(0), 8).tolist() == [0.5 + 2 * k for k in range(8)]
    assert quantiles(torch.tensor([3.0]), 4).tolist() == [3.0] * 4


def test_sliced_distance_matches_numpy():
    gen = torch.Generator().manual_seed(4)
    feats = torch.randn(1, 5, 32, 32, generator=gen, dtype=torch.float64)
    # twice the points of the output: the target's quantiles average neighbouring samples
    style = torch.randn(1, 5, 32, 64, generator=gen, dtype=torch.float64) * 2 + 1
    directions = orthonormal_directions(5, 64)
    got = relative_sliced_distance(feats, directions, projected_quantiles(style.flatten(2),
                                                                          directions))
    theta = directions.numpy()
    mine = np.sort(theta @ feats.reshape(5, -1).numpy(), axis=1)
    theirs = np.sort(theta @ style.reshape(5, -1).numpy(), axis=1)
    theirs = theirs.reshape(len(theta), QUANTILES, 2).mean(axis=2)
    expected = np.sqrt(((mine - theirs) ** 2).sum() / (theirs**2).sum())
    assert got.item() == pytest.approx(expected, rel=1e-9)


def test_sliced_distance_of_zero_features_is_one_and_scale_free():
    gen = torch.Generator().manual_seed(5)
    feats, style = torch.rand(1, 6, 8, 8, generator=gen), torch.rand(1, 6, 10, 7, generator=gen)
    directions = orthonormal_directions(6, 64)
    target = projected_quantiles(style.flatten(2), directions)
    dist = relative_sliced_distance(feats, directions, target)
    assert relative_sliced_distance(0 * feats, directions, target).item() == pytest.approx(1.0)
    scaled = relative_sliced_distance(5 * feats, directions,
                                      projected_quantiles(5 * style.flatten(2), directions))
    torch.testing.assert_close(scaled, dist)


def test_sliced_judge_is_fixed():
    images = tiny_images(16)
    content, (style, other) = images.content, images.styles
    first = pixel_judge()(content, content, style)
    again = pixel_judge()
    assert again(content, content, style) == first  # a fresh judge: the same directions
    assert again(content, content, style) == first  # and again
    assert again(content, content, other).sliced != first.sliced
    assert first.sliced > 0.01


# --- Gaussian W2 -------------------------------------------------------------------------------


def scipy_relative_w2(feats: np.ndarray, style: np.ndarray) -> float:
    """sqrt(W2^2 / E|F_s|^2) between Gaussians fitted to (C, N) point clouds, float64 scipy."""
    linalg = pytest.importorskip("scipy.linalg")
    mu, mu_s = feats.mean(1), style.mean(1)
    cov = np.cov(feats, bias=True)
    cov_s = np.cov(style, bias=True)
    root = linalg.sqrtm(cov_s)
    cross = linalg.sqrtm(root @ cov @ root).real
    squared = ((mu - mu_s) ** 2).sum() + np.trace(cov + cov_s - 2 * cross)
    return float(np.sqrt(squared / ((mu_s**2).sum() + np.trace(cov_s))))


def correlated(gen: torch.Generator, channels: int, h: int, w: int) -> torch.Tensor:
    mix = torch.randn(channels, channels, generator=gen, dtype=torch.float64)
    noise = torch.randn(channels, h * w, generator=gen, dtype=torch.float64)
    shift = torch.rand(channels, 1, generator=gen, dtype=torch.float64)
    return (mix @ noise + shift).reshape(1, channels, h, w)


def test_w2_distance_matches_scipy():
    gen = torch.Generator().manual_seed(6)
    feats, style = correlated(gen, 6, 12, 12), correlated(gen, 6, 10, 14)
    mean = style.flatten(2).mean(-1)
    centred = style.flatten(2) - mean.unsqueeze(-1)
    cov = centred @ centred.transpose(1, 2) / centred.shape[-1]
    got = relative_w2_distance(feats, mean, cov).item()
    expected = scipy_relative_w2(feats.reshape(6, -1).numpy(), style.reshape(6, -1).numpy())
    assert got == pytest.approx(expected, rel=1e-4)


def test_w2_judge_matches_scipy_on_pixels():
    images = tiny_images(16)
    content, style = images.content, images.style
    got = pixel_judge()(content, content, style).w2
    expected = scipy_relative_w2(content.reshape(3, -1).double().numpy(),
                                 style.reshape(3, -1).double().numpy())
    assert got == pytest.approx(expected, rel=1e-3)


def test_w2_distance_of_zero_features_is_one_and_scale_free():
    gen = torch.Generator().manual_seed(7)
    feats, style = correlated(gen, 4, 8, 8), correlated(gen, 4, 8, 8)
    mean = style.flatten(2).mean(-1)
    centred = style.flatten(2) - mean.unsqueeze(-1)
    cov = centred @ centred.transpose(1, 2) / centred.shape[-1]
    assert relative_w2_distance(0 * feats, mean, cov).item() == pytest.approx(1.0, rel=1e-4)
    torch.testing.assert_close(relative_w2_distance(3 * feats, 3 * mean, 9 * cov),
                               relative_w2_distance(feats, mean, cov), rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_vgg_judge_on_real_images(tiny):
    content, style = tiny / "content" / "coffee.png", tiny / "style" / "starry_night.png"
    judge = Judge(size=64)
    assert judge(content, content, style).content == 0.0
    itself = judge(style, content, style)
    assert itself.style == pytest.approx(0.0, abs=1e-5)
    assert itself.sliced == pytest.approx(0.0, abs=1e-5)
    assert itself.palette == pytest.approx(0.0, abs=1e-3)
    assert itself.w2 == pytest.approx(0.0, abs=1e-2)
    assert judge(content, content, style).ssim == pytest.approx(0.0, abs=1e-6)
    # the content image is far from the style's Grams, the style image far from the content
    as_content = judge(content, content, style)
    assert as_content.style > 0.3
    assert as_content.w2 > 0.1
    assert as_content.sliced > 0.1
    assert as_content.palette > 5
    assert itself.content > 0.3
    assert itself.ssim > 0.3
