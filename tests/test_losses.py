"""Numerical tests for :mod:`nstkit.losses` (Gram, shifted Gram, content, TV, colour terms)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator

import kornia
import pytest
import torch
from torch.autograd import gradcheck

from nstkit.losses import (
    STYLE_LAYERS,
    ColourLoss,
    ContentLoss,
    GramLoss,
    LossTerm,
    ShiftedGramLoss,
    Targets,
    TVLoss,
    content_loss,
    equal_weights,
    geometric_weights,
    gram_loss,
    gram_matrix,
    layer_weights,
    tv_loss,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DTYPES = [torch.float32, torch.float64]


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    return request.param


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    """Intra-op threading only adds overhead on these tiny tensors (on some 2-core CPU
    containers each parallel CPU kernel costs ~15 ms); run the module single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- helpers -------------------------------------------------------------------------------


def _rand(*shape: int, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float64,
          lo: float = 0.0, hi: float = 1.0, seed: int = 0) -> torch.Tensor:
    """Uniform tensor in ``[lo, hi]`` drawn from a seeded CPU generator."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(*shape, generator=gen, dtype=torch.float64)
    return (lo + (hi - lo) * x).to(device=device, dtype=dtype)


def _randn(*shape: int, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float64,
           seed: int = 0) -> torch.Tensor:
    """Standard normal tensor drawn from a seeded CPU generator."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)


def _tol(dtype: torch.dtype) -> dict[str, float]:
    if dtype == torch.float32:
        return {"atol": 1e-5, "rtol": 1e-4}
    return {"atol": 1e-10, "rtol": 1e-9}


def _ref_gram_raw(f: torch.Tensor) -> torch.Tensor:
    """Unnormalised Gram ``G[b, i, j] = sum_p F[b, i, p] F[b, j, p]`` (float64, einsum)."""
    flat = f.double().flatten(2)
    return torch.einsum("bip,bjp->bij", flat, flat)


def _ref_gram(f: torch.Tensor) -> torch.Tensor:
    """Size-normalised Gram ``G_raw / (H W)`` (float64)."""
    return _ref_gram_raw(f) / (f.shape[-2] * f.shape[-1])


def _ref_gatys(f: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Gatys et al.: ``1 / (4 N^2 M^2) sum (G_raw - A_raw)^2`` for one image (B = 1)."""
    assert f.shape[0] == 1
    assert f.shape == p.shape
    n, m = f.shape[1], f.shape[2] * f.shape[3]
    diff = _ref_gram_raw(f) - _ref_gram_raw(p)
    return diff.pow(2).sum() / (4 * n**2 * m**2)


def _ref_mse(f: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``mean((F - P)^2)`` with an explicit sum and count (float64)."""
    diff = f.double() - p.double()
    return diff.pow(2).sum() / diff.numel()


def _ref_tv(image: torch.Tensor, exponent: float, eps: float = 1e-8) -> torch.Tensor:
    """Mean over the ``(H-1) x (W-1)`` grid of ``(dx^2 + dy^2)^(beta / 2)`` with explicit loops.

    ``eps`` is added inside the power only for ``beta < 2``, as documented by ``tv_loss``.
    """
    img = image.double()
    h, w = img.shape[-2:]
    total = img.new_zeros(())
    count = 0
    for i in range(h - 1):
        for j in range(w - 1):
            dx = img[:, :, i, j + 1] - img[:, :, i, j]
            dy = img[:, :, i + 1, j] - img[:, :, i, j]
            squared = dx**2 + dy**2
            if exponent < 2:
                squared = squared + eps
            total = total + (squared ** (exponent / 2)).sum()
            count += squared.numel()
    return total / count


def _targets(content_features: dict[str, torch.Tensor] | None = None,
             style_features: list[dict[str, torch.Tensor]] | None = None,
             style_blend: list[float] | None = None,
             content_image: torch.Tensor | None = None) -> Targets:
    """Targets built by hand (style images are placeholders: the terms under test only read
    the style features)."""
    style_features = style_features or [{}]
    ref = content_image if content_image is not None else _rand(1, 3, 4, 4)
    return Targets(
        content_image=ref,
        content_features=content_features or {},
        style_images=[torch.zeros_like(ref[:1]) for _ in style_features],
        style_features=style_features,
        style_blend=style_blend or [1.0],
    )


def _identity_resolve(name: str) -> str:
    return name


# --- gram_matrix ---------------------------------------------------------------------------


class TestGramMatrix:
    def test_matches_independent_formula(self, device: str, dtype: torch.dtype) -> None:
        f = _randn(2, 5, 4, 6, device=device, dtype=dtype)
        g = gram_matrix(f)
        assert g.shape == (2, 5, 5)
        assert g.dtype == dtype
        assert g.device.type == device
        torch.testing.assert_close(g.double().cpu(), _ref_gram(f).cpu(), **_tol(dtype))

    def test_matches_explicit_loops(self) -> None:
        f = _randn(1, 3, 2, 3, seed=3)
        g = gram_matrix(f)
        c, m = f.shape[1], f.shape[2] * f.shape[3]
        flat = f.reshape(1, c, m).tolist()[0]
        for i in range(c):
            for j in range(c):
                expected = sum(flat[i][p] * flat[j][p] for p in range(m)) / m
                assert g[0, i, j].item() == pytest.approx(expected, rel=1e-12, abs=1e-12)

    def test_symmetric(self, device: str, dtype: torch.dtype) -> None:
        g = gram_matrix(_randn(3, 6, 5, 5, device=device, dtype=dtype, seed=1))
        torch.testing.assert_close(g, g.transpose(1, 2), **_tol(dtype))

    def test_batch_items_independent(self, device: str, dtype: torch.dtype) -> None:
        f = _randn(2, 4, 3, 5, device=device, dtype=dtype, seed=2)
        g = gram_matrix(f)
        torch.testing.assert_close(g[1:], gram_matrix(f[1:]), **_tol(dtype))
        assert not torch.allclose(g[0], g[1])

    def test_size_normalisation_tiled(self, device: str, dtype: torch.dtype) -> None:
        f = _randn(2, 4, 3, 5, device=device, dtype=dtype, seed=4)
        tiled = torch.tile(f, (1, 1, 2, 2))
        assert tiled.shape == (2, 4, 6, 10)
        torch.testing.assert_close(gram_matrix(tiled), gram_matrix(f), **_tol(dtype))

    def test_non_contiguous_input(self, device: str, dtype: torch.dtype) -> None:
        f = _randn(1, 4, 5, 3, device=device, dtype=dtype, seed=5).transpose(2, 3)
        assert not f.is_contiguous()
        torch.testing.assert_close(gram_matrix(f).double().cpu(), _ref_gram(f).cpu(),
                                   **_tol(dtype))

    def test_3d_input_raises(self) -> None:
        with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
            gram_matrix(torch.zeros(4, 3, 3))

    def test_gradcheck(self, device: str) -> None:
        f = _randn(1, 4, 3, 3, device=device, seed=6).requires_grad_()
        assert gradcheck(gram_matrix, (f,))


# --- gram_loss / GramLoss ------------------------------------------------------------------


class TestGramLoss:
    def test_gatys_formula(self, device: str, dtype: torch.dtype) -> None:
        f = _randn(1, 6, 4, 5, device=device, dtype=dtype, seed=10)
        p = _rand(1, 6, 4, 5, device=device, dtype=dtype, seed=11, hi=2.0)
        value = gram_loss(gram_matrix(f), gram_matrix(p))
        assert value.dim() == 0
        expected = _ref_gatys(f, p)
        assert expected > 0
        torch.testing.assert_close(value.double().cpu(), expected.cpu(), **_tol(dtype))

    def test_batch_is_averaged(self, device: str, dtype: torch.dtype) -> None:
        f = _randn(2, 3, 4, 4, device=device, dtype=dtype, seed=12)
        p = _randn(1, 3, 4, 4, device=device, dtype=dtype, seed=13)
        value = gram_loss(gram_matrix(f), gram_matrix(p))
        expected = (_ref_gatys(f[:1], p) + _ref_gatys(f[1:], p)) / 2
        torch.testing.assert_close(value.double().cpu(), expected.cpu(), **_tol(dtype))

    def test_zero_for_identical(self, device: str, dtype: torch.dtype) -> None:
        f = _randn(1, 4, 5, 5, device=device, dtype=dtype, seed=14)
        assert gram_loss(gram_matrix(f), gram_matrix(f.clone())).item() == 0.0

    def test_mismatched_channels_raise(self) -> None:
        with pytest.raises(ValueError, match="differ"):
            gram_loss(torch.zeros(1, 3, 3), torch.zeros(1, 4, 4))

    def test_gradcheck(self, device: str) -> None:
        f = _randn(1, 4, 3, 3, device=device, seed=15).requires_grad_()
        p = _rand(1, 4, 3, 3, device=device, seed=16).requires_grad_()
        assert gradcheck(lambda x, y: gram_loss(gram_matrix(x), gram_matrix(y)), (f, p))

    def test_module_single_style_equals_formula(self, device: str, dtype: torch.dtype) -> None:
        layers = {"l1": 1.0, "l2": 0.25}
        feats = {"l1": _randn(1, 3, 4, 4, device=device, dtype=dtype, seed=20),
                 "l2": _randn(1, 5, 2, 3, device=device, dtype=dtype, seed=21)}
        style = {"l1": _rand(1, 3, 4, 4, device=device, dtype=dtype, seed=22),
                 "l2": _rand(1, 5, 2, 3, device=device, dtype=dtype, seed=23)}
        term = GramLoss(layers)
        term.prepare(_targets(style_features=[style]))
        value = term(_rand(1, 3, 8, 8, device=device, dtype=dtype), feats)
        expected = sum(w * _ref_gatys(feats[k], style[k]) for k, w in layers.items())
        torch.testing.assert_close(value.double().cpu(), expected.cpu(), **_tol(dtype))

    def test_blend_gradient_equals_blended_losses(self, device: str, dtype: torch.dtype) -> None:
        """Blending target Grams changes the value by a constant only; gradients match."""
        blend = [0.7, 0.3]
        layers = {"l1": 1.0, "l2": 0.5}
        shapes = {"l1": (1, 3, 4, 4), "l2": (1, 4, 3, 3)}
        styles = [{k: _rand(*s, device=device, dtype=dtype, seed=30 + 10 * n + i, hi=2.0)
                   for i, (k, s) in enumerate(shapes.items())} for n in range(2)]
        term = GramLoss(layers)
        term.prepare(_targets(style_features=styles, style_blend=blend))
        image = _rand(1, 3, 8, 8, device=device, dtype=dtype)

        def independent(feats: dict[str, torch.Tensor]) -> torch.Tensor:
            return sum(w * sum(b * _ref_gatys(feats[k], s[k]) for b, s in zip(blend, styles,
                                                                               strict=True))
                       for k, w in layers.items())

        # The constant: sum_l w_l * b1 b2 * sum (A1 - A2)^2 / (4 N^2), on normalised Grams.
        constant = sum(
            w * blend[0] * blend[1]
            * (_ref_gram(styles[0][k]) - _ref_gram(styles[1][k])).pow(2).sum()
            / (4 * shapes[k][1] ** 2)
            for k, w in layers.items()
        )
        assert constant > 1e-3
        for seed in (40, 41):
            feats = {k: _randn(*s, device=device, dtype=dtype, seed=seed + i).requires_grad_()
                     for i, (k, s) in enumerate(shapes.items())}
            value = term(image, feats)
            grads = torch.autograd.grad(value, list(feats.values()))
            ref_feats = {k: v.detach().double().requires_grad_() for k, v in feats.items()}
            ref_value = independent(ref_feats)
            ref_grads = torch.autograd.grad(ref_value, list(ref_feats.values()))
            torch.testing.assert_close((ref_value - value.double()).detach(), constant,
                                       **_tol(dtype))
            for grad, ref_grad in zip(grads, ref_grads, strict=True):
                torch.testing.assert_close(grad.double(), ref_grad, **_tol(dtype))

    def test_default_layers(self) -> None:
        term = GramLoss()
        assert tuple(term.layers) == STYLE_LAYERS
        assert term.layers == pytest.approx({k: 0.2 for k in STYLE_LAYERS})
        assert term.shift == 0.0

    def test_module_gradcheck(self, device: str) -> None:
        styles = [{"l1": _rand(1, 4, 3, 3, device=device, seed=50),
                   "l2": _rand(1, 2, 2, 2, device=device, seed=51)}]
        term = GramLoss({"l1": 1.0, "l2": 2.0})
        term.prepare(_targets(style_features=styles))
        image = _rand(1, 3, 4, 4, device=device)
        f1 = _randn(1, 4, 3, 3, device=device, seed=52).requires_grad_()
        f2 = _randn(1, 2, 2, 2, device=device, seed=53).requires_grad_()
        assert gradcheck(lambda a, b: term(image, {"l1": a, "l2": b}), (f1, f2))


# --- shifted Gram --------------------------------------------------------------------------


class TestShiftedGram:
    def test_shift_minus_one_equals_gram_of_f_minus_one(self, device: str,
                                                        dtype: torch.dtype) -> None:
        f = _rand(2, 4, 3, 5, device=device, dtype=dtype, seed=60)
        g = gram_matrix(f, shift=-1)
        torch.testing.assert_close(g.double().cpu(), _ref_gram(f - 1).cpu(), **_tol(dtype))
        assert not torch.allclose(g, gram_matrix(f))

    def test_general_shift(self, device: str, dtype: torch.dtype) -> None:
        f = _randn(1, 3, 4, 4, device=device, dtype=dtype, seed=61)
        torch.testing.assert_close(gram_matrix(f, shift=0.5).double().cpu(),
                                   _ref_gram(f + 0.5).cpu(), **_tol(dtype))

    def test_shifted_module_defaults(self) -> None:
        term = ShiftedGramLoss()
        assert term.shift == -1.0
        assert tuple(term.layers) == STYLE_LAYERS
        assert GramLoss(shift=-1).shift == -1.0
        assert ShiftedGramLoss(shift=0.0).shift == 0.0

    def test_shifted_equals_gram_loss_shift_minus_one(self, device: str,
                                                      dtype: torch.dtype) -> None:
        style = {"l1": _rand(1, 4, 4, 4, device=device, dtype=dtype, seed=62)}
        feats = {"l1": _rand(1, 4, 4, 4, device=device, dtype=dtype, seed=63, hi=2.0)}
        image = _rand(1, 3, 8, 8, device=device, dtype=dtype)
        values = {}
        for name, term in {"shifted": ShiftedGramLoss(["l1"]),
                           "explicit": GramLoss(["l1"], shift=-1),
                           "plain": GramLoss(["l1"])}.items():
            term.prepare(_targets(style_features=[style]))
            values[name] = term(image, feats)
        torch.testing.assert_close(values["shifted"], values["explicit"])
        expected = _ref_gatys(feats["l1"] - 1, style["l1"] - 1)
        torch.testing.assert_close(values["shifted"].double().cpu(), expected.cpu(),
                                   **_tol(dtype))
        assert not torch.allclose(values["shifted"], values["plain"])

    def test_gradcheck(self, device: str) -> None:
        f = _rand(1, 4, 3, 3, device=device, seed=64).requires_grad_()
        p = _rand(1, 4, 3, 3, device=device, seed=65).requires_grad_()

        def fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return gram_loss(gram_matrix(x, shift=-1), gram_matrix(y, shift=-1))

        assert gradcheck(fn, (f, p))

    def test_module_gradcheck(self, device: str) -> None:
        term = ShiftedGramLoss(["l1"])
        term.prepare(_targets(style_features=[{"l1": _rand(1, 4, 3, 3, device=device, seed=66)}]))
        image = _rand(1, 3, 4, 4, device=device)
        f = _rand(1, 4, 3, 3, device=device, seed=67).requires_grad_()
        assert gradcheck(lambda x: term(image, {"l1": x}), (f,))


# --- content -------------------------------------------------------------------------------


class TestContentLoss:
    def test_equals_mse(self, device: str, dtype: torch.dtype) -> None:
        f = _randn(2, 4, 3, 5, device=device, dtype=dtype, seed=70)
        p = _randn(2, 4, 3, 5, device=device, dtype=dtype, seed=71)
        value = content_loss(f, p)
        assert value.dim() == 0
        torch.testing.assert_close(value.double().cpu(), _ref_mse(f, p).cpu(), **_tol(dtype))

    def test_target_broadcast_over_batch(self, device: str, dtype: torch.dtype) -> None:
        f = _randn(3, 2, 4, 4, device=device, dtype=dtype, seed=72)
        p = _randn(1, 2, 4, 4, device=device, dtype=dtype, seed=73)
        expected = _ref_mse(f, p.expand_as(f))
        torch.testing.assert_close(content_loss(f, p).double().cpu(), expected.cpu(),
                                   **_tol(dtype))

    def test_zero_for_identical(self, device: str, dtype: torch.dtype) -> None:
        f = _randn(1, 3, 4, 4, device=device, dtype=dtype, seed=74)
        assert content_loss(f, f.clone()).item() == 0.0

    def test_mismatched_shapes_raise(self) -> None:
        with pytest.raises(ValueError, match=r"\(1, 4, 3, 3\).*\(1, 5, 3, 3\)"):
            content_loss(torch.zeros(1, 4, 3, 3), torch.zeros(1, 5, 3, 3))
        with pytest.raises(ValueError, match=r"\(1, 4, 3, 3\).*\(1, 4, 2, 3\)"):
            content_loss(torch.zeros(1, 4, 3, 3), torch.zeros(1, 4, 2, 3))

    def test_module_layer_weights(self, device: str, dtype: torch.dtype) -> None:
        shapes = {"a": (1, 3, 4, 4), "b": (1, 5, 2, 2)}
        content = {k: _randn(*s, device=device, dtype=dtype, seed=80 + i)
                   for i, (k, s) in enumerate(shapes.items())}
        feats = {k: _randn(*s, device=device, dtype=dtype, seed=90 + i)
                 for i, (k, s) in enumerate(shapes.items())}
        term = ContentLoss({"a": 2.0, "b": 0.5})
        term.prepare(_targets(content_features=content))
        value = term(_rand(1, 3, 8, 8, device=device, dtype=dtype), feats)
        expected = 2.0 * _ref_mse(feats["a"], content["a"]) + 0.5 * _ref_mse(feats["b"],
                                                                            content["b"])
        torch.testing.assert_close(value.double().cpu(), expected.cpu(), **_tol(dtype))

    def test_prepare_detaches_targets(self) -> None:
        content = {"relu4_2": _randn(1, 3, 2, 2, seed=95).requires_grad_()}
        term = ContentLoss()
        term.prepare(_targets(content_features=content))
        assert not term.targets["relu4_2"].requires_grad

    def test_gradcheck(self, device: str) -> None:
        f = _randn(1, 4, 3, 3, device=device, seed=96).requires_grad_()
        p = _randn(1, 4, 3, 3, device=device, seed=97).requires_grad_()
        assert gradcheck(content_loss, (f, p))

    def test_module_gradcheck(self, device: str) -> None:
        content = {"a": _randn(1, 4, 3, 3, device=device, seed=98),
                   "b": _randn(1, 2, 2, 2, device=device, seed=99)}
        term = ContentLoss({"a": 2.0, "b": 0.5})
        term.prepare(_targets(content_features=content))
        image = _rand(1, 3, 4, 4, device=device)
        fa = _randn(1, 4, 3, 3, device=device, seed=100).requires_grad_()
        fb = _randn(1, 2, 2, 2, device=device, seed=101).requires_grad_()
        assert gradcheck(lambda a, b: term(image, {"a": a, "b": b}), (fa, fb))


# --- total variation -----------------------------------------------------------------------


class TestTV:
    @pytest.mark.parametrize("exponent", [1.0, 2.0, 2.5])
    def test_matches_explicit_formula(self, device: str, dtype: torch.dtype,
                                      exponent: float) -> None:
        img = _rand(2, 3, 5, 6, device=device, dtype=dtype, seed=110)
        value = tv_loss(img, exponent=exponent)
        assert value.dim() == 0
        torch.testing.assert_close(value.double().cpu(), _ref_tv(img, exponent).cpu(),
                                   **_tol(dtype))

    def test_eps_only_below_two(self) -> None:
        # On a constant image every squared gradient is 0, so only eps remains.
        flat = torch.full((1, 3, 4, 4), 0.5, dtype=torch.float64)
        assert tv_loss(flat, exponent=1.0).item() == pytest.approx(math.sqrt(1e-8), rel=1e-9)
        assert tv_loss(flat, exponent=1.0, eps=1e-6).item() == pytest.approx(1e-3, rel=1e-9)
        assert tv_loss(flat, exponent=2.0).item() == 0.0
        assert tv_loss(flat, exponent=2.5).item() == 0.0

    @pytest.mark.parametrize("exponent", [1.0, 2.0, 2.5])
    def test_constant_image_near_zero(self, device: str, dtype: torch.dtype,
                                      exponent: float) -> None:
        flat = torch.full((2, 3, 6, 5), 0.3, device=device, dtype=dtype)
        assert tv_loss(flat, exponent=exponent).item() < 1e-3
        assert TVLoss(exponent=exponent)(flat, {}).item() < 1e-3

    def test_ignores_last_row_and_column(self) -> None:
        """Differences live on the (H-1) x (W-1) grid: the last row's horizontal and the last
        column's vertical differences are not counted."""
        img = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
        img[..., 2, 0] = 1.0  # last row: only a vertical difference at (1, 0) sees it
        # grid (2 x 2): at (1, 0) dy = 1, dx = 0 -> 1; others 0 -> mean 1/4
        assert tv_loss(img).item() == pytest.approx(0.25)

    def test_module_matches_function(self, device: str, dtype: torch.dtype) -> None:
        img = _rand(1, 3, 5, 5, device=device, dtype=dtype, seed=111)
        torch.testing.assert_close(TVLoss(exponent=2.5)(img, {}), tv_loss(img, 2.5))
        torch.testing.assert_close(TVLoss()(img, {}), tv_loss(img, 2.0))
        assert TVLoss().layers == {}

    def test_anisotropic_equals_kornia(self, device: str, dtype: torch.dtype) -> None:
        img = _rand(2, 3, 5, 7, device=device, dtype=dtype, seed=112)
        value = TVLoss(anisotropic=True)(img, {})
        expected = kornia.losses.total_variation(img, reduction="mean").mean()
        torch.testing.assert_close(value, expected)
        # independently: per (B, C) mean |dy| over (H-1) W plus mean |dx| over H (W-1)
        x = img.double()
        dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(-2, -1))
        dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=(-2, -1))
        torch.testing.assert_close(value.double(), (dy + dx).mean(), **_tol(dtype))

    def test_one_pixel_high_raises(self) -> None:
        with pytest.raises(ValueError, match=r"H, W >= 2"):
            tv_loss(torch.zeros(1, 3, 1, 5))
        with pytest.raises(ValueError, match=r"H, W >= 2"):
            tv_loss(torch.zeros(1, 3, 5, 1))
        with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
            tv_loss(torch.zeros(3, 5, 5))

    @pytest.mark.parametrize("exponent", [1.0, 2.0, 2.5])
    def test_gradcheck(self, device: str, exponent: float) -> None:
        img = _rand(1, 3, 5, 5, device=device, seed=113).requires_grad_()
        assert gradcheck(lambda x: tv_loss(x, exponent=exponent), (img,))

    @pytest.mark.parametrize("anisotropic", [False, True])
    def test_module_gradcheck(self, device: str, anisotropic: bool) -> None:
        img = _rand(1, 3, 5, 5, device=device, seed=114).requires_grad_()
        term = TVLoss(exponent=2.5, anisotropic=anisotropic)
        assert gradcheck(lambda x: term(x, {}), (img,))


# --- colour --------------------------------------------------------------------------------


class TestColourLoss:
    @pytest.mark.parametrize("space", ["ycbcr", "lab"])
    def test_zero_against_own_content(self, device: str, dtype: torch.dtype,
                                      space: str) -> None:
        content = _rand(1, 3, 6, 6, device=device, dtype=dtype, seed=120)
        term = ColourLoss(space=space)
        term.prepare(_targets(content_image=content))
        assert term(content.clone(), {}).item() == pytest.approx(0.0, abs=1e-12)
        other = _rand(1, 3, 6, 6, device=device, dtype=dtype, seed=121)
        assert term(other, {}).item() > 1e-4

    def test_ycbcr_formula(self, device: str, dtype: torch.dtype) -> None:
        """Mean squared (Cb, Cr) difference, BT.601 full range written out by hand."""
        content = _rand(1, 3, 4, 5, device=device, dtype=dtype, seed=122)
        image = _rand(1, 3, 4, 5, device=device, dtype=dtype, seed=123)
        term = ColourLoss()
        term.prepare(_targets(content_image=content))

        def chroma(x: torch.Tensor) -> torch.Tensor:
            r, g, b = x.double().unbind(1)
            y = 0.299 * r + 0.587 * g + 0.114 * b
            return torch.stack([(b - y) * 0.564, (r - y) * 0.713])

        expected = (chroma(image) - chroma(content)).pow(2).mean()
        torch.testing.assert_close(term(image, {}).double(), expected, atol=1e-5, rtol=1e-3)

    def test_content_broadcast_over_batch(self, device: str, dtype: torch.dtype) -> None:
        content = _rand(1, 3, 4, 4, device=device, dtype=dtype, seed=124)
        images = _rand(2, 3, 4, 4, device=device, dtype=dtype, seed=125)
        term = ColourLoss()
        term.prepare(_targets(content_image=content))
        both = term(images, {})
        each = (term(images[:1], {}) + term(images[1:], {})) / 2
        torch.testing.assert_close(both, each, **_tol(dtype))

    def test_forward_before_prepare_raises(self) -> None:
        with pytest.raises(RuntimeError, match="prepare"):
            ColourLoss()(torch.zeros(1, 3, 4, 4), {})

    @pytest.mark.parametrize("space", ["ycbcr", "lab"])
    def test_module_gradcheck(self, device: str, space: str) -> None:
        content = _rand(1, 3, 4, 4, device=device, lo=0.2, hi=0.8, seed=126)
        img = _rand(1, 3, 4, 4, device=device, lo=0.2, hi=0.8, seed=127).requires_grad_()
        term = ColourLoss(space=space)
        term.prepare(_targets(content_image=content))
        assert gradcheck(lambda x: term(x, {}), (img,))


# --- all terms: optimisation, dtype / device -----------------------------------------------


def _optimise(loss_fn: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor,
              steps: int = 100, lr: float = 0.05) -> tuple[float, float]:
    x = x0.clone().requires_grad_()
    opt = torch.optim.Adam([x], lr=lr)
    initial = loss_fn(x).item()
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(x)
        loss.backward()
        opt.step()
    return initial, loss_fn(x).item()


class TestOptimisation:
    def test_content_decreases(self, device: str, dtype: torch.dtype) -> None:
        term = ContentLoss(["l"])
        term.prepare(_targets(content_features={
            "l": _randn(1, 4, 5, 5, device=device, dtype=dtype, seed=130)}))
        image = _rand(1, 3, 4, 4, device=device, dtype=dtype)
        x0 = _randn(1, 4, 5, 5, device=device, dtype=dtype, seed=131)
        initial, final = _optimise(lambda f: term(image, {"l": f}), x0)
        assert final < 0.1 * initial

    @pytest.mark.parametrize("cls", [GramLoss, ShiftedGramLoss])
    def test_gram_decreases(self, device: str, dtype: torch.dtype, cls: type[GramLoss]) -> None:
        term = cls(["l"])
        term.prepare(_targets(style_features=[{
            "l": _rand(1, 4, 6, 6, device=device, dtype=dtype, seed=132, hi=2.0)}]))
        image = _rand(1, 3, 4, 4, device=device, dtype=dtype)
        x0 = _randn(1, 4, 6, 6, device=device, dtype=dtype, seed=133)
        initial, final = _optimise(lambda f: term(image, {"l": f}), x0)
        assert final < 0.1 * initial

    @pytest.mark.parametrize(("exponent", "anisotropic"),
                             [(1.0, False), (2.0, False), (2.5, False), (2.0, True)])
    def test_tv_decreases(self, device: str, dtype: torch.dtype, exponent: float,
                          anisotropic: bool) -> None:
        term = TVLoss(exponent=exponent, anisotropic=anisotropic)
        x0 = _rand(1, 3, 8, 8, device=device, dtype=dtype, seed=134)
        initial, final = _optimise(lambda x: term(x, {}), x0)
        assert final < 0.1 * initial

    @pytest.mark.parametrize("space", ["ycbcr", "lab"])
    def test_colour_decreases(self, device: str, dtype: torch.dtype, space: str) -> None:
        term = ColourLoss(space=space)
        term.prepare(_targets(content_image=_rand(1, 3, 6, 6, device=device, dtype=dtype,
                                                  lo=0.2, hi=0.8, seed=135)))
        x0 = _rand(1, 3, 6, 6, device=device, dtype=dtype, lo=0.2, hi=0.8, seed=136)
        initial, final = _optimise(lambda x: term(x, {}), x0)
        assert final < 0.1 * initial


def _term_cases(device: str, dtype: torch.dtype) -> list[tuple[LossTerm, dict[str, torch.Tensor]]]:
    def r(*shape: int, seed: int) -> torch.Tensor:
        return _rand(*shape, device=device, dtype=dtype, seed=seed)

    targets = _targets(
        content_image=r(1, 3, 8, 8, seed=140),
        content_features={"a": r(1, 4, 4, 4, seed=141), "b": r(1, 2, 2, 2, seed=142)},
        style_features=[{"a": r(1, 4, 3, 3, seed=143), "b": r(1, 2, 2, 2, seed=144)},
                        {"a": r(1, 4, 5, 5, seed=145), "b": r(1, 2, 3, 3, seed=146)}],
        style_blend=[0.6, 0.4],
    )
    feats = {"a": r(1, 4, 4, 4, seed=147), "b": r(1, 2, 2, 2, seed=148)}
    terms: list[LossTerm] = [
        ContentLoss({"a": 2.0, "b": 0.5}), GramLoss(["a", "b"]), ShiftedGramLoss(["a", "b"]),
        TVLoss(), TVLoss(exponent=2.5), TVLoss(anisotropic=True), ColourLoss(),
        ColourLoss(space="lab"),
    ]
    for term in terms:
        term.prepare(targets)
    return [(term, feats) for term in terms]


class TestDtypeDevice:
    def test_output_scalar_dtype_device(self, device: str, dtype: torch.dtype) -> None:
        image = _rand(1, 3, 8, 8, device=device, dtype=dtype, seed=149)
        for term, feats in _term_cases(device, dtype):
            out = term(image, feats)
            assert isinstance(out, torch.Tensor), type(term).__name__
            assert out.dim() == 0, type(term).__name__
            assert out.dtype == dtype, type(term).__name__
            assert out.device.type == device, type(term).__name__
            assert torch.isfinite(out), type(term).__name__

    def test_functions_preserve_dtype_device(self, device: str, dtype: torch.dtype) -> None:
        f = _randn(1, 3, 4, 4, device=device, dtype=dtype)
        g = gram_matrix(f, shift=-1)
        outs = [g, gram_loss(g, g * 2), content_loss(f, f * 2), tv_loss(f), tv_loss(f, 2.5),
                tv_loss(f, 1.0)]
        for out in outs:
            assert out.dtype == dtype
            assert out.device.type == device
        assert all(out.dim() == 0 for out in outs[1:])


# --- layer weights -------------------------------------------------------------------------


class TestLayerWeights:
    @pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
    def test_equal_weights_sum_to_one(self, n: int) -> None:
        layers = [f"l{i}" for i in range(n)]
        weights = equal_weights(layers)
        assert list(weights) == layers
        assert sum(weights.values()) == pytest.approx(1.0)
        assert all(w == pytest.approx(1.0 / n) for w in weights.values())

    def test_geometric_falling(self) -> None:
        weights = geometric_weights(["a", "b", "c"], 2.0)
        assert list(weights) == ["a", "b", "c"]
        assert weights == pytest.approx({"a": 4 / 7, "b": 2 / 7, "c": 1 / 7})

    def test_geometric_rising(self) -> None:
        weights = geometric_weights(["a", "b", "c"], 2.0, rising=True)
        assert weights == pytest.approx({"a": 1 / 7, "b": 2 / 7, "c": 4 / 7})

    @pytest.mark.parametrize("ratio", [0.5, 1.0, 3.0])
    def test_geometric_sums_to_one(self, ratio: float) -> None:
        layers = list(STYLE_LAYERS)
        for rising in (False, True):
            weights = geometric_weights(layers, ratio, rising=rising)
            assert sum(weights.values()) == pytest.approx(1.0)
            values = list(weights.values())
            for prev, nxt in itertools.pairwise(values):
                assert nxt / prev == pytest.approx(ratio if rising else 1 / ratio)

    def test_layer_weights_none_uses_default(self) -> None:
        assert layer_weights(None, ("x", "y")) == pytest.approx({"x": 0.5, "y": 0.5})
        assert list(layer_weights(None, ("x", "y"))) == ["x", "y"]

    def test_layer_weights_list_is_equal(self) -> None:
        weights = layer_weights(["a", "b", "c", "d"], ("x",))
        assert weights == pytest.approx({k: 0.25 for k in "abcd"})
        assert layer_weights(("a", "b"), ("x",)) == pytest.approx({"a": 0.5, "b": 0.5})

    def test_layer_weights_single_string(self) -> None:
        assert layer_weights("relu3_1", ("x",)) == {"relu3_1": 1.0}

    def test_layer_weights_mapping_taken_as_given(self) -> None:
        weights = layer_weights({"a": 3, "b": 1}, ("x",))
        assert weights == {"a": 3.0, "b": 1.0}
        assert all(isinstance(w, float) for w in weights.values())

    def test_terms_use_layer_weights(self) -> None:
        assert ContentLoss().layers == {"relu4_2": 1.0}
        assert ContentLoss(["p", "q"]).layers == pytest.approx({"p": 0.5, "q": 0.5})
        assert GramLoss({"p": 0.3}).layers == {"p": 0.3}

    def test_bind_renames_aliases(self) -> None:
        aliases = {"block4_conv2": "relu4_2", "block1_conv1": "relu1_1"}

        def resolve(name: str) -> str:
            return aliases.get(name, name)

        term = ContentLoss({"block4_conv2": 2.0, "relu3_1": 0.5})
        term.bind(resolve)
        assert term.layers == {"relu4_2": 2.0, "relu3_1": 0.5}
        term.bind(_identity_resolve)
        assert term.layers == {"relu4_2": 2.0, "relu3_1": 0.5}

        # After binding, prepare/forward read the canonical names.
        content = {"relu4_2": _randn(1, 2, 3, 3, seed=150), "relu3_1": _randn(1, 2, 3, 3, seed=151)}
        term.prepare(_targets(content_features=content))
        feats = {"relu4_2": _randn(1, 2, 3, 3, seed=152), "relu3_1": _randn(1, 2, 3, 3, seed=153)}
        expected = 2.0 * _ref_mse(feats["relu4_2"], content["relu4_2"]) + 0.5 * _ref_mse(
            feats["relu3_1"], content["relu3_1"])
        torch.testing.assert_close(term(torch.zeros(1, 3, 4, 4), feats), expected)

        style = GramLoss(["block1_conv1", "block4_conv2"])
        style.bind(resolve)
        assert style.layers == pytest.approx({"relu1_1": 0.5, "relu4_2": 0.5})
