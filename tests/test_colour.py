"""Tests for :mod:`nstkit.colour`."""

from __future__ import annotations

import pytest
import torch
from kornia.color import rgb_to_ycbcr, ycbcr_to_rgb

from nstkit.colour import (
    chroma_loss,
    luminance,
    luminance_only_inputs,
    match_colour_histogram,
    match_colour_linear,
    recombine_luminance,
)
from nstkit.losses import ColourLoss, Targets

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DTYPES = [torch.float32, torch.float64]

on_devices = pytest.mark.parametrize("device", DEVICES)
in_dtypes = pytest.mark.parametrize("dtype", DTYPES)


def _rand(
    *shape: int, device: str, dtype: torch.dtype, lo: float = 0.0, hi: float = 1.0, seed: int = 0
) -> torch.Tensor:
    """Uniform random tensor in ``[lo, hi]`` from a seeded CPU generator."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(*shape, generator=gen, dtype=torch.float64)
    return (lo + (hi - lo) * x).to(device=device, dtype=dtype)


def _tol(dtype: torch.dtype) -> float:
    return 1e-5 if dtype == torch.float32 else 1e-10


def _mean_cov(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = image.double().permute(1, 0, 2, 3).reshape(3, -1)
    return x.mean(1), torch.cov(x, correction=0)


# --- luminance ---------------------------------------------------------------


@on_devices
@in_dtypes
def test_luminance_is_bt601(device: str, dtype: torch.dtype) -> None:
    img = _rand(2, 3, 16, 16, device=device, dtype=dtype)
    r, g, b = img[:, 0:1], img[:, 1:2], img[:, 2:3]
    expected = 0.299 * r + 0.587 * g + 0.114 * b
    y = luminance(img)
    assert y.shape == (2, 1, 16, 16)
    assert y.dtype == dtype
    torch.testing.assert_close(y, expected, atol=_tol(dtype), rtol=0)


@on_devices
@in_dtypes
def test_luminance_only_inputs(device: str, dtype: torch.dtype) -> None:
    content = _rand(2, 3, 16, 16, device=device, dtype=dtype, lo=0.3, hi=0.7, seed=1)
    style = _rand(3, 3, 12, 20, device=device, dtype=dtype, seed=2)
    c_grey, s_grey = luminance_only_inputs(content, style)
    assert c_grey.shape == content.shape
    assert s_grey.shape == style.shape
    for grey in (c_grey, s_grey):
        assert torch.equal(grey[:, 0], grey[:, 1])
        assert torch.equal(grey[:, 0], grey[:, 2])
        assert grey.min() >= 0
        assert grey.max() <= 1
    torch.testing.assert_close(c_grey[:, :1], luminance(content))
    y_c, y_s = luminance(content), s_grey[:, :1]
    assert y_s.min() > 0
    assert y_s.max() < 1
    mu_s = y_s.mean(dim=(1, 2, 3))
    std_s = y_s.std(dim=(1, 2, 3), correction=0)
    atol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(mu_s, y_c.mean().expand(3), atol=atol, rtol=0)
    torch.testing.assert_close(std_s, y_c.std(correction=0).expand(3), atol=atol, rtol=0)


@on_devices
@in_dtypes
def test_recombine_round_trip(device: str, dtype: torch.dtype) -> None:
    content = _rand(2, 3, 16, 16, device=device, dtype=dtype, seed=3)
    torch.testing.assert_close(recombine_luminance(content, content), content, atol=1e-4, rtol=0)


@on_devices
@in_dtypes
def test_recombine_keeps_stylised_y_and_content_chroma(device: str, dtype: torch.dtype) -> None:
    content = _rand(2, 3, 16, 16, device=device, dtype=dtype, lo=0.3, hi=0.7, seed=4)
    stylised = _rand(2, 3, 16, 16, device=device, dtype=dtype, lo=0.4, hi=0.6, seed=5)
    out = recombine_luminance(stylised, content)
    assert out.shape == content.shape
    assert out.dtype == dtype
    ycbcr = rgb_to_ycbcr(out)
    torch.testing.assert_close(ycbcr[:, :1], luminance(stylised), atol=1e-4, rtol=0)
    torch.testing.assert_close(ycbcr[:, 1:], rgb_to_ycbcr(content)[:, 1:], atol=1e-4, rtol=0)


# --- colour matching -----------------------------------------------------------


def _correlated_content(device: str, dtype: torch.dtype) -> torch.Tensor:
    """Content image in roughly [0.3, 0.7] with correlated channels and a colour cast."""
    base = _rand(1, 3, 16, 16, device="cpu", dtype=torch.float64, lo=-0.5, hi=0.5, seed=6)
    mix = torch.tensor(
        [[0.30, 0.10, 0.00], [0.15, 0.20, 0.05], [0.00, 0.10, 0.25]], dtype=torch.float64
    )
    img = torch.einsum("ij,bjhw->bihw", mix, base) + torch.tensor([0.55, 0.5, 0.45]).view(
        1, 3, 1, 1
    )
    return img.to(device=device, dtype=dtype)


@pytest.mark.parametrize("content_batch", [1, 2])
@on_devices
@in_dtypes
def test_match_colour_linear_matches_mean_and_cov(
    device: str, dtype: torch.dtype, content_batch: int
) -> None:
    content = _correlated_content(device, dtype).expand(content_batch, -1, -1, -1)
    style = _rand(2, 3, 12, 20, device=device, dtype=dtype, lo=0.3, hi=0.7, seed=7)
    out = match_colour_linear(style, content)
    assert out.shape == style.shape
    assert out.dtype == dtype
    assert out.min() > 0
    assert out.max() < 1
    mu_c, cov_c = _mean_cov(content[:1])
    for i in range(2):
        mu_o, cov_o = _mean_cov(out[i : i + 1])
        torch.testing.assert_close(mu_o, mu_c, atol=1e-3, rtol=0)
        torch.testing.assert_close(cov_o, cov_c, atol=1e-3, rtol=0)


@on_devices
@in_dtypes
def test_match_colour_linear_identity(device: str, dtype: torch.dtype) -> None:
    img = _rand(2, 3, 16, 16, device=device, dtype=dtype, seed=8)
    torch.testing.assert_close(match_colour_linear(img, img), img, atol=1e-5, rtol=0)


@on_devices
@in_dtypes
def test_match_colour_histogram_equal_sizes(device: str, dtype: torch.dtype) -> None:
    content = _rand(2, 3, 16, 16, device=device, dtype=dtype, seed=9).pow(2)
    style = _rand(2, 3, 16, 16, device=device, dtype=dtype, seed=10)
    out = match_colour_histogram(style, content)
    assert out.shape == style.shape
    assert out.dtype == dtype
    sorted_out = out.flatten(2).sort(dim=2).values
    sorted_c = content.flatten(2).sort(dim=2).values
    torch.testing.assert_close(sorted_out, sorted_c, atol=0, rtol=0)


@on_devices
@in_dtypes
def test_match_colour_histogram_different_sizes_monotone(device: str, dtype: torch.dtype) -> None:
    content = _rand(1, 3, 16, 16, device=device, dtype=dtype, seed=11).sqrt()
    style = _rand(2, 3, 10, 7, device=device, dtype=dtype, seed=12)
    out = match_colour_histogram(style, content)
    assert out.shape == style.shape
    assert out.min() >= 0
    assert out.max() <= 1
    s, o = style.flatten(2), out.flatten(2)
    o_by_style_rank = o.gather(2, s.argsort(dim=2))
    assert (o_by_style_rank.diff(dim=2) >= 0).all()
    assert torch.equal(o.amin(2), content.flatten(2).amin(2).expand(2, 3))
    assert torch.equal(o.amax(2), content.flatten(2).amax(2).expand(2, 3))
    torch.testing.assert_close(
        o.median(2).values, content.flatten(2).median(2).values.expand(2, 3), atol=0.05, rtol=0
    )


@on_devices
@in_dtypes
def test_match_colour_bad_batch_raises(device: str, dtype: torch.dtype) -> None:
    style = _rand(2, 3, 8, 8, device=device, dtype=dtype)
    content = _rand(3, 3, 8, 8, device=device, dtype=dtype)
    for fn in (match_colour_linear, match_colour_histogram):
        with pytest.raises(ValueError, match=r"batch size 1 or 2"):
            fn(style, content)
        with pytest.raises(
            ValueError, match=r"style must have shape \(B, 3, H, W\), got \(2, 4, 8, 8\)"
        ):
            fn(torch.zeros(2, 4, 8, 8, device=device, dtype=dtype), content)


# --- chroma loss -----------------------------------------------------------------


@pytest.mark.parametrize("space", ["ycbcr", "lab"])
@on_devices
@in_dtypes
def test_chroma_loss_zero_and_positive(device: str, dtype: torch.dtype, space: str) -> None:
    a = _rand(2, 3, 16, 16, device=device, dtype=dtype, seed=13)
    b = _rand(2, 3, 16, 16, device=device, dtype=dtype, seed=14)
    zero = chroma_loss(a, a, space)
    assert zero.shape == ()
    assert zero.item() == 0.0
    assert chroma_loss(a, b, space).item() > 1e-3


@on_devices
@in_dtypes
def test_chroma_loss_ignores_luminance_ycbcr(device: str, dtype: torch.dtype) -> None:
    a = _rand(2, 3, 16, 16, device=device, dtype=dtype, lo=0.3, hi=0.7, seed=15)
    ycbcr = rgb_to_ycbcr(a)
    brighter = ycbcr_to_rgb(torch.cat([ycbcr[:, :1] + 0.1, ycbcr[:, 1:]], dim=1))
    assert brighter.min() > 0
    assert brighter.max() < 1
    assert (brighter - a).abs().max() > 0.05
    assert chroma_loss(brighter, a, "ycbcr").item() < 1e-10


@pytest.mark.parametrize("space", ["ycbcr", "lab"])
@on_devices
def test_chroma_loss_gradcheck(device: str, space: str) -> None:
    dtype = torch.float64
    img = _rand(1, 3, 4, 4, device=device, dtype=dtype, lo=0.2, hi=0.8, seed=16).requires_grad_()
    tgt = _rand(1, 3, 4, 4, device=device, dtype=dtype, lo=0.2, hi=0.8, seed=17).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, t: chroma_loss(x, t, space), (img, tgt))


@pytest.mark.parametrize("space", ["ycbcr", "lab"])
@on_devices
@in_dtypes
def test_colour_term_equals_chroma_loss(device: str, dtype: torch.dtype, space: str) -> None:
    a = _rand(2, 3, 8, 8, device=device, dtype=dtype, seed=18)
    b = _rand(2, 3, 8, 8, device=device, dtype=dtype, seed=19)
    module = ColourLoss(space=space)
    module.prepare(Targets(b, {}, [], [], []))
    assert torch.equal(module(a, {}), chroma_loss(a, b, space))


@on_devices
@in_dtypes
def test_chroma_loss_bad_inputs_raise(device: str, dtype: torch.dtype) -> None:
    a = _rand(2, 3, 8, 8, device=device, dtype=dtype)
    with pytest.raises(ValueError, match=r"Unknown colour space 'hsv'.*'ycbcr', 'lab'"):
        chroma_loss(a, a, "hsv")
    with pytest.raises(ValueError, match=r"same shape, got \(2, 3, 8, 8\) and \(2, 3, 4, 4\)"):
        chroma_loss(a, a[:, :, :4, :4])
    with pytest.raises(ValueError, match=r"image must have shape \(B, 3, H, W\), got \(3, 8, 8\)"):
        chroma_loss(a[0], a[0])
    with pytest.raises(
        ValueError, match=r"target must have shape \(B, 3, H, W\), got \(2, 1, 8, 8\)"
    ):
        chroma_loss(a, a[:, :1])


@pytest.mark.parametrize("space", ["ycbcr", "lab"])
@on_devices
@in_dtypes
def test_chroma_loss_decreases_under_adam(device: str, dtype: torch.dtype, space: str) -> None:
    target = _rand(1, 3, 16, 16, device=device, dtype=dtype, lo=0.1, hi=0.9, seed=20)
    init = _rand(1, 3, 16, 16, device=device, dtype=dtype, lo=0.1, hi=0.9, seed=21)
    logits = torch.logit(init).requires_grad_()  # sigmoid keeps the image in (0, 1)
    opt = torch.optim.Adam([logits], lr=0.1)
    def loss_fn(image: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        return chroma_loss(image, goal, space)

    first = loss_fn(torch.sigmoid(logits), target).item()
    for _ in range(50):
        opt.zero_grad()
        loss = loss_fn(torch.sigmoid(logits), target)
        loss.backward()
        opt.step()
    last = loss_fn(torch.sigmoid(logits), target).item()
    assert last < first / 10
