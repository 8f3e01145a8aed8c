"""Numerical tests for the distribution-matching style terms: Gaussian 2-Wasserstein (with its
Newton-Schulz square root), mean/std (AdaIN), sliced Wasserstein and histogram losses."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from nstkit.losses import (
    HistogramLoss,
    LossTerm,
    MeanStdLoss,
    SlicedWassersteinLoss,
    StatisticLoss,
    Targets,
    WassersteinLoss,
    channel_mean_std,
    gaussian_wasserstein,
    histogram_loss,
    match_histograms,
    mean_std_loss,
    random_directions,
    sliced_wasserstein_loss,
    sqrtm,
)
from nstkit.losses.quantiles import interpolate_quantiles, mixture_quantiles, quantile_levels
from nstkit.losses.wasserstein import (
    ROOTS,
    SQRTM_ITERATIONS,
    ieee_matmuls,
    sqrtm_eig,
    sqrtm_eigh,
)
from nstkit.optimisation import WeightedTerm, WholeImage, compute_targets, feature_layers
from nstkit.testing import TinyExtractor, check_loss, make_host, tiny_images
from nstkit.tiling.evaluate import TiledImage
from nstkit.tiling.grid import TileGrid, layer_strides
from nstkit.tiling.targets import prepare_tiled, tile_targets, tiled_targets

DTYPES = [torch.float32, torch.float64]


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def extractor() -> TinyExtractor:
    return TinyExtractor(width=4)


# --- helpers -------------------------------------------------------------------------------------
def _randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)


def _features(channels: int, positions: int, *, rank: int | None = None, seed: int = 0,
              offset: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    """ReLU features ``(1, C, positions, 1)`` (float64) of a ``rank``-dimensional source: many
    channels dead or rarely active, so the covariance is rank-deficient, as VGG's is."""
    rank = rank or channels
    gen = torch.Generator().manual_seed(seed)
    source = torch.randn(rank, positions, generator=gen, dtype=torch.float64)
    mix = torch.randn(channels, rank, generator=gen, dtype=torch.float64) / math.sqrt(rank)
    bias = torch.randn(channels, 1, generator=gen, dtype=torch.float64) * 0.5 - 0.5
    return (scale * (torch.relu(mix @ source + bias) + offset)).reshape(1, channels, -1, 1)


def _psd_and_root(n: int, *, seed: int = 0, smallest: float = 1e-2, rank: int | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """A random symmetric PSD ``(n, n)`` matrix (float64), eigenvalues log-spaced from 1 down
    to ``smallest``, the last ``n - rank`` of them 0; and its square root, exact by
    construction."""
    q, _ = torch.linalg.qr(_randn(n, n, seed=seed))
    values = torch.logspace(0, math.log10(smallest), n, dtype=torch.float64)
    if rank is not None:
        values[rank:] = 0
    return (q * values) @ q.T, (q * values.sqrt()) @ q.T


def _psd(n: int, *, seed: int = 0, smallest: float = 1e-2, rank: int | None = None
         ) -> torch.Tensor:
    return _psd_and_root(n, seed=seed, smallest=smallest, rank=rank)[0]


def _targets(style_features: list[dict[str, torch.Tensor]],
             blend: list[float] | None = None) -> Targets:
    """Targets built by hand: the terms under test read only the style features and blend."""
    ref = torch.zeros(1, 3, 4, 4, dtype=next(iter(style_features[0].values())).dtype)
    return Targets(content_image=ref, content_features={},
                   style_images=[ref for _ in style_features], style_features=style_features,
                   style_blend=blend or [1.0 / len(style_features)] * len(style_features))


def _scipy_sqrtm(matrix: torch.Tensor) -> torch.Tensor:
    linalg = pytest.importorskip("scipy.linalg")
    return torch.from_numpy(np.real(linalg.sqrtm(matrix.double().numpy())))


def _ref_w2(mean: torch.Tensor, cov: torch.Tensor, target_mean: torch.Tensor,
            target_cov: torch.Tensor) -> float:
    """``|μ - μ_t|^2 + tr(S + S_t - 2 (S_t^1/2 S S_t^1/2)^1/2)`` with SciPy's sqrtm (float64)."""
    root = _scipy_sqrtm(target_cov)
    cross = _scipy_sqrtm(root @ cov.double() @ root)
    return float((mean.double() - target_mean.double()).pow(2).sum() + torch.trace(cov.double())
                 + torch.trace(target_cov.double()) - 2 * torch.trace(cross))


def _gaussian_fit(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """NumPy's mean and (population) covariance of ``(1, C, H, W)`` features, float64."""
    flat = features.double()[0].flatten(1).numpy()
    return torch.from_numpy(flat.mean(1)), torch.from_numpy(np.cov(flat, bias=True))


def _descends(make_term: Callable[[], LossTerm], steps: int = 8) -> tuple[float, float]:
    """The term's value before and after ``steps`` Adam steps on a tiny image (each step
    preceded by ``start_step``; both values measured with step 0's state)."""
    ext = TinyExtractor(width=4)
    images = tiny_images(24)
    term = make_term()
    term.bind(ext.resolve)
    layers = list(term.layers)
    term.prepare(compute_targets(ext, layers, images.content, [images.style], [1.0]))
    image = images.content.clone().requires_grad_(True)
    with torch.no_grad():
        before = float(term(image, ext(image, layers)))
    optimiser = torch.optim.Adam([image], lr=0.02)
    for step in range(1, steps + 1):
        term.start_step(step)
        optimiser.zero_grad()
        term(image, ext(image, layers)).backward()
        optimiser.step()
        with torch.no_grad():
            image.clamp_(0, 1)
    term.start_step(0)
    with torch.no_grad():
        after = float(term(image, ext(image, layers)))
    return before, after


def _partition_statistics(term: StatisticLoss, features: dict[str, torch.Tensor],
                          cuts: list[int]) -> dict[str, torch.Tensor]:
    """The term's statistics summed over pieces of the positions (cut along the width), divided
    by the whole's number of positions."""
    sums: dict[str, torch.Tensor] = {}
    for start, stop in itertools.pairwise([0, *cuts, None]):
        part = {k: v[..., start:stop] for k, v in features.items()}
        for key, value in term.statistics(part).items():
            sums[key] = sums[key] + value if key in sums else value
    return {k: v / (features[k].shape[-2] * features[k].shape[-1]) for k, v in sums.items()}


# --- the start_step hook -------------------------------------------------------------------------
class _Recorder(LossTerm):
    def __init__(self) -> None:
        super().__init__()
        self.steps: list[int] = []

    def start_step(self, step: int) -> None:
        self.steps.append(step)

    def forward(self, image, features):
        return image.sum()


def test_start_step_does_nothing_by_default_and_evaluators_pass_it_on(extractor):
    assert LossTerm().start_step(3) is None
    term = _Recorder()
    WholeImage([WeightedTerm("r", 1.0, term)], extractor, []).start_step(4)
    grid = TileGrid(32, 32, 32, 0, 16)
    TiledImage([WeightedTerm("r", 1.0, term)], extractor, [], "fp32", grid, {}, "global",
               torch.Generator().manual_seed(0)).start_step(5)
    assert term.steps == [4, 5]


# --- sqrtm ---------------------------------------------------------------------------------------
class TestSqrtm:
    @pytest.mark.parametrize(("n", "smallest", "rank"), [
        (5, 1e-1, None), (32, 1e-2, None), (32, 1e-4, None), (64, 1e-3, 40), (16, 1.0, None)])
    def test_matches_scipy_in_float64(self, n: int, smallest: float, rank: int | None) -> None:
        """Eigenvalues down to 1e-4 of the largest (the iterations resolve about 1e-6 of the
        Frobenius norm): agreement with the exact root to 1e-10, and with SciPy's to 1e-10
        (1e-7 for a singular matrix, where SciPy's Schur method, like any method given the
        rounded matrix, is only good to about sqrt(u |A|)); exact zeros stay zero."""
        matrix, exact = _psd_and_root(n, seed=n, smallest=smallest, rank=rank)
        root = sqrtm(matrix)
        assert root.dtype == torch.float64
        torch.testing.assert_close(root, exact, rtol=0, atol=1e-10)
        atol = 1e-10 if rank is None else 1e-7
        torch.testing.assert_close(root, _scipy_sqrtm(matrix), rtol=0, atol=atol)
        torch.testing.assert_close(root @ root, matrix, rtol=0, atol=1e-10)

    def test_ill_conditioned_error_is_bounded_by_the_unresolved_eigenvalues(self) -> None:
        """Eigenvalues down to 1e-10: those under ~1e-6 |A|_F come out smaller; the error of
        the root is at most sqrt(1e-6 |A|_F) per unresolved eigenvalue, and more iterations
        resolve them."""
        matrix = _psd(24, seed=1, smallest=1e-10)
        reference = _scipy_sqrtm(matrix)
        norm = float(torch.linalg.matrix_norm(matrix))
        error = float(torch.linalg.matrix_norm(sqrtm(matrix) - reference, ord=2))
        assert error <= math.sqrt(1e-6 * norm)
        torch.testing.assert_close(sqrtm(matrix, iterations=60), reference, rtol=0, atol=1e-8)

    def test_float32_on_a_realistic_rank_deficient_512_channel_covariance(self) -> None:
        """relu5_1-like: 512 channels, 256 positions (rank < 256), rounded to float32 the
        way the loss sees it: a finite root within 3e-3 of the exact one (relative, Frobenius),
        and the trace (what the loss uses) within 1e-4."""
        features = _features(512, 256, rank=64)
        cov = torch.from_numpy(np.cov(features[0].flatten(1).numpy(), bias=True))
        cov = cov + 1e-3 * torch.linalg.matrix_norm(cov) * torch.eye(512, dtype=cov.dtype)
        exact = sqrtm_eigh(cov)
        root = sqrtm(cov.float())
        assert root.dtype == torch.float32
        assert torch.isfinite(root).all()
        relative = torch.linalg.matrix_norm(root.double() - exact) / torch.linalg.matrix_norm(exact)
        assert relative < 3e-3
        assert torch.trace(root.double()) == pytest.approx(float(torch.trace(exact)), rel=1e-4)

    def test_half_precision_and_autocast_compute_in_float32(self) -> None:
        matrix = _psd(16, seed=3, smallest=1e-2)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            root = sqrtm(matrix.to(torch.bfloat16))
            root32 = sqrtm(matrix.float())
        assert root.dtype == root32.dtype == torch.float32
        torch.testing.assert_close(root32.double(), _scipy_sqrtm(matrix), rtol=0, atol=1e-5)
        torch.testing.assert_close(root.double(), _scipy_sqrtm(matrix), rtol=0, atol=3e-2)

    def test_batched_and_zero(self) -> None:
        batch = torch.stack([_psd(6, seed=4), _psd(6, seed=5), torch.zeros(6, 6,
                                                                          dtype=torch.float64)])
        roots = sqrtm(batch)
        for matrix, root in zip(batch, roots, strict=True):
            torch.testing.assert_close(root, sqrtm(matrix))
        assert torch.equal(roots[2], torch.zeros(6, 6, dtype=torch.float64))

    def test_tf32_is_off_inside_and_restored_after(self) -> None:
        """A job runs under TF32 on CUDA; the square root switches it off (only flags are
        touched, so this runs without a GPU)."""
        matmul = torch.backends.cuda.matmul
        saved = matmul.fp32_precision
        try:
            matmul.fp32_precision = "tf32"
            with ieee_matmuls(torch.device("cuda")):
                assert matmul.fp32_precision == "ieee"
            assert matmul.fp32_precision == "tf32"
            with ieee_matmuls(torch.device("cpu")):
                assert matmul.fp32_precision == "tf32"
        finally:
            matmul.fp32_precision = saved

    def test_rejects_non_square(self) -> None:
        with pytest.raises(ValueError, match=r"\(\.\.\., n, n\)"):
            sqrtm(torch.zeros(3, 4))

    def test_gradcheck(self) -> None:
        matrix = _psd(4, seed=6, smallest=0.1).requires_grad_(True)
        assert gradcheck(sqrtm, (matrix,))

    def test_gradient_matches_the_eigendecomposition(self) -> None:
        """d tr(sqrt(A)) / dA = A^(-1/2) / 2 (symmetric A)."""
        matrix = _psd(8, seed=7, smallest=1e-2).requires_grad_(True)
        (grad,) = torch.autograd.grad(torch.trace(sqrtm(matrix)), matrix)
        values, vectors = torch.linalg.eigh(matrix.detach())
        expected = (vectors * values.rsqrt()) @ vectors.T / 2
        torch.testing.assert_close(grad, expected, rtol=1e-7, atol=1e-9)


# --- sqrtm_eig -----------------------------------------------------------------------------------
class TestSqrtmEig:
    @pytest.mark.parametrize(("n", "smallest", "rank"), [
        (5, 1e-1, None), (32, 1e-6, None), (64, 1e-3, 40)])
    def test_matches_the_exact_root(self, n: int, smallest: float, rank: int | None) -> None:
        """Any spectrum, singular included (no iterations to resolve small eigenvalues)."""
        matrix, exact = _psd_and_root(n, seed=n, smallest=smallest, rank=rank)
        root = sqrtm_eig(matrix)
        atol = 1e-12 if rank is None else 1e-7  # a zero eigenvalue's rounding: sqrt(u)
        torch.testing.assert_close(root, exact, rtol=0, atol=atol)
        torch.testing.assert_close(root, _scipy_sqrtm(matrix), rtol=0, atol=atol)

    def test_half_precision_is_promoted(self) -> None:
        matrix = _psd(16, seed=3, smallest=1e-2)
        root = sqrtm_eig(matrix.to(torch.bfloat16))
        assert root.dtype == torch.float32
        torch.testing.assert_close(root.double(), _scipy_sqrtm(matrix), rtol=0, atol=3e-2)

    def test_gradcheck(self) -> None:
        matrix = _psd(5, seed=6, smallest=0.1).requires_grad_(True)
        assert gradcheck(lambda a: sqrtm_eig((a + a.T) / 2), (matrix,))

    def test_gradient_matches_newton_schulz(self) -> None:
        """The Sylvester backward against autograd through the Newton-Schulz iterations
        (converged at this spectrum), for a loss that is not a trace."""
        matrix = _psd(12, seed=7, smallest=1e-2).requires_grad_(True)
        weights = _randn(12, 12, seed=8)
        grads = [torch.autograd.grad((root(matrix) * weights).sum(), matrix)[0]
                 for root in (sqrtm_eig, lambda a: sqrtm(a, iterations=40))]
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-7, atol=1e-9)

    def test_repeated_eigenvalues_have_a_finite_gradient(self) -> None:
        """eigh's own backward divides by differences of eigenvalues; this one does not."""
        matrix = (4 * torch.eye(6, dtype=torch.float64)).requires_grad_(True)
        (grad,) = torch.autograd.grad(torch.trace(sqrtm_eig(matrix)), matrix)
        torch.testing.assert_close(grad, torch.eye(6, dtype=torch.float64) / 4)

    def test_rejects_non_square(self) -> None:
        with pytest.raises(ValueError, match=r"\(\.\.\., n, n\)"):
            sqrtm_eig(torch.zeros(3, 4))


# --- gaussian_wasserstein ------------------------------------------------------------------------
class TestGaussianWasserstein:
    def test_identical_gaussians_are_zero(self) -> None:
        """``S_t^1/2 S S_t^1/2 = S^2`` squares the condition number: eigenvalues of ``S`` down
        to 1e-2 of the largest are resolved at the default iterations, 1e-3 with 40."""
        mean = _randn(1, 12, seed=9)
        for smallest, iterations in ((1e-2, SQRTM_ITERATIONS), (1e-3, 40)):
            cov = _psd(12, seed=8, smallest=smallest)[None]
            value = gaussian_wasserstein(mean, cov, mean, cov, root="newton_schulz",
                                         iterations=iterations)
            assert abs(float(value)) < 1e-10
        cov = _psd(12, seed=8, smallest=1e-5)[None]  # eigh: any spectrum
        assert abs(float(gaussian_wasserstein(mean, cov, mean, cov))) < 1e-10

    def test_one_dimensional(self) -> None:
        value = gaussian_wasserstein(torch.tensor([[1.5]]), torch.tensor([[[4.0]]]),
                                     torch.tensor([[-0.5]]), torch.tensor([[[0.25]]]))
        assert value.shape == (1,)
        assert float(value) == pytest.approx((1.5 + 0.5) ** 2 + (2.0 - 0.5) ** 2, rel=1e-6)

    def test_diagonal_closed_form(self) -> None:
        a = torch.tensor([4.0, 1.0, 0.09, 2.25], dtype=torch.float64)
        b = torch.tensor([1.0, 0.16, 0.25, 2.25], dtype=torch.float64)
        mu, nu = _randn(1, 4, seed=10), _randn(1, 4, seed=11)
        value = gaussian_wasserstein(mu, torch.diag(a)[None], nu, torch.diag(b)[None])
        expected = (mu - nu).pow(2).sum() + (a.sqrt() - b.sqrt()).pow(2).sum()
        assert float(value) == pytest.approx(float(expected), rel=1e-10)

    @pytest.mark.parametrize(("n", "smallest", "rank"), [
        (6, 1e-1, None), (24, 1e-3, None), (24, 1e-4, 12)])
    def test_matches_scipy(self, n: int, smallest: float, rank: int | None) -> None:
        """Random PSD pairs, ill-conditioned and rank-deficient ones included (eigenvalues of
        S_t^1/2 S S_t^1/2 down to 1e-8 of the largest): within 1e-6 of the traces."""
        cov, target = _psd(n, seed=n, smallest=smallest), _psd(n, seed=n + 1, smallest=smallest,
                                                              rank=rank)
        mean, target_mean = _randn(1, n, seed=12), _randn(1, n, seed=13)
        value = float(gaussian_wasserstein(mean, cov[None], target_mean, target[None]))
        scale = float(torch.trace(cov) + torch.trace(target))
        expected = _ref_w2(mean[0], cov, target_mean[0], target)
        assert value == pytest.approx(expected, abs=1e-6 * scale)

    def test_batch_against_one_target_and_given_root(self) -> None:
        covs = torch.stack([_psd(5, seed=14), _psd(5, seed=15)])
        means = _randn(2, 5, seed=16)
        target, target_mean = _psd(5, seed=17)[None], _randn(1, 5, seed=18)
        values = gaussian_wasserstein(means, covs, target_mean, target)
        assert values.shape == (2,)
        for i in range(2):
            assert float(values[i]) == pytest.approx(
                _ref_w2(means[i], covs[i], target_mean[0], target[0]), rel=1e-8)
        given = gaussian_wasserstein(means, covs, target_mean, target,
                                     target_sqrt=_scipy_sqrtm(target[0])[None])
        torch.testing.assert_close(given, values)

    def test_gradcheck(self) -> None:
        cov = _psd(3, seed=19, smallest=0.2)[None].requires_grad_(True)
        mean = _randn(1, 3, seed=20).requires_grad_(True)
        target, target_mean = _psd(3, seed=21, smallest=0.2)[None], _randn(1, 3, seed=22)
        assert gradcheck(lambda m, s: gaussian_wasserstein(m, s, target_mean, target),
                         (mean, cov))


# --- WassersteinLoss -----------------------------------------------------------------------------
def _w2_reference(image: torch.Tensor, style: torch.Tensor, eps: float) -> float:
    """The term's documented value for one layer: W2^2 / C between the NumPy Gaussian fits, each
    covariance plus eps |S_s|_F I."""
    mean, cov = _gaussian_fit(image)
    target_mean, target_cov = _gaussian_fit(style)
    ridge = eps * float(torch.linalg.matrix_norm(target_cov)) * torch.eye(len(mean),
                                                                          dtype=torch.float64)
    return _ref_w2(mean, cov + ridge, target_mean, target_cov + ridge) / len(mean)


class TestWassersteinLoss:
    def test_value_matches_the_formula(self) -> None:
        layers = {"a": 1.0, "b": 0.5}
        style = {"a": _features(6, 40, seed=1), "b": _features(3, 12, seed=2)}
        image = {"a": _features(6, 30, seed=3), "b": _features(3, 20, seed=4)}
        term = WassersteinLoss(layers)
        term.prepare(_targets([style]))
        value = float(term(torch.zeros(1), image))
        expected = sum(w * _w2_reference(image[k], style[k], 1e-3) for k, w in layers.items())
        assert value == pytest.approx(expected, rel=1e-8)

    @pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
    def test_zero_at_the_target(self, dtype: torch.dtype) -> None:
        features = {"a": _features(32, 50, rank=8, seed=5, offset=2.0).to(dtype)}
        term = WassersteinLoss(["a"])
        term.prepare(_targets([features]))
        value = float(term(torch.zeros(1, dtype=dtype), features))
        scale = float(torch.trace(_gaussian_fit(features["a"])[1])) / 32
        assert abs(value) < (1e-9 if dtype == torch.float64 else 1e-5) * scale
        assert value < 1e-3 * float(term(torch.zeros(1), {"a": _features(32, 50, seed=6)}))

    def test_blend_is_the_gaussian_of_the_mixture(self) -> None:
        """Two styles blended half and half, same size: the style made of all their positions."""
        first, second = _features(5, 24, seed=7), _features(5, 24, seed=8, offset=1.0)
        image = {"a": _features(5, 30, seed=9)}
        blended = WassersteinLoss(["a"])
        blended.prepare(_targets([{"a": first}, {"a": second}], [0.5, 0.5]))
        pooled = WassersteinLoss(["a"])
        pooled.prepare(_targets([{"a": torch.cat([first, second], dim=2)}]))
        assert float(blended(torch.zeros(1), image)) == pytest.approx(
            float(pooled(torch.zeros(1), image)), rel=1e-10)

    def test_statistics_add_up_over_a_partition(self) -> None:
        """Tiling exactness: the statistics summed over pieces of the positions give the whole's
        means (before and after centring at the style's mean), hence the same value."""
        features = {"a": _randn(2, 4, 6, 10, seed=10), "b": _randn(2, 3, 3, 5, seed=11)}
        term = WassersteinLoss(["a", "b"])
        for style in (None, {"a": _randn(1, 4, 5, 5, seed=12), "b": _randn(1, 3, 3, 3, seed=13)}):
            if style is not None:
                term.prepare(_targets([style]))
            summed = _partition_statistics(term, features, [3, 7] if style else [1])
            whole = term.means(features)
            for key, value in whole.items():
                torch.testing.assert_close(summed[key], value)
        assert float(term.loss_from_means(summed)) == pytest.approx(
            float(term(torch.zeros(1), features)), rel=1e-10)
        mean, cov = _gaussian_fit(features["a"][:1])
        c = 4
        first = whole["a"][0, :c, c] + term.center["a"]
        centred = whole["a"][0, :c, :c] - whole["a"][0, :c, c:] @ whole["a"][0, c:, :c]
        torch.testing.assert_close(first, mean)
        torch.testing.assert_close(centred, cov)

    @pytest.mark.parametrize("root", ROOTS)
    def test_float32_on_realistic_512_channel_features(self, root: str) -> None:
        """relu5_1-like features (rank-deficient), the image's also far from the style's
        (mean 10 times larger: rounding in E[FF^T] - μμ^T is large): float32 stays finite and
        within 3e-3 of float64 (relative; the rounding ridge adds up to C · 32 u = 2e-3 of the
        mean term in float32)."""
        style = {"a": _features(512, 256, rank=64, seed=14)}
        for image in (_features(512, 256, rank=64, seed=15),
                      _features(512, 144, rank=64, seed=16, offset=3.0, scale=10.0)):
            values = []
            for dtype in DTYPES:
                term = WassersteinLoss(["a"], root=root)
                term.prepare(_targets([{"a": style["a"].to(dtype)}]))
                values.append(float(term(torch.zeros(1), {"a": image.to(dtype)})))
            assert math.isfinite(values[0])
            assert values[0] == pytest.approx(values[1], rel=3e-3)

    def test_bf16_autocast(self) -> None:
        style, image = {"a": _features(16, 40, seed=17)}, {"a": _features(16, 30, seed=18)}
        term = WassersteinLoss(["a"])
        term.prepare(_targets([{k: v.float() for k, v in style.items()}]))
        plain = float(term(torch.zeros(1), {"a": image["a"].float()}))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = term(torch.zeros(1), {"a": image["a"].to(torch.bfloat16)})
        assert auto.dtype == torch.float32
        assert float(auto) == pytest.approx(plain, rel=2e-2)

    def test_gradcheck(self) -> None:
        term = WassersteinLoss(["a"])
        term.prepare(_targets([{"a": _randn(1, 3, 4, 4, seed=19)}]))
        feats = _randn(1, 3, 3, 4, seed=20).requires_grad_(True)
        assert gradcheck(lambda f: term(torch.zeros(1), {"a": f}), (feats,))

    def test_roots_agree(self) -> None:
        """eigh (default) and 40 Newton-Schulz iterations: the same value and gradient."""
        style, image = _features(24, 60, seed=30), _features(24, 50, seed=31)
        results = []
        for root in ROOTS:
            term = WassersteinLoss(["a"], root=root, iterations=40)
            term.prepare(_targets([{"a": style}]))
            feats = image.clone().requires_grad_(True)
            value = term(torch.zeros(1), {"a": feats})
            results.append((value, torch.autograd.grad(value, feats)[0]))
        torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-8, atol=0)
        torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-6, atol=1e-12)

    def test_options(self) -> None:
        with pytest.raises(ValueError, match="eps"):
            WassersteinLoss(eps=0)
        with pytest.raises(ValueError, match="root must be one of eigh, newton_schulz"):
            WassersteinLoss(root="svd")
        assert WassersteinLoss().layers == pytest.approx(
            {k: 0.2 for k in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")})


# --- mean_std ------------------------------------------------------------------------------------
class TestMeanStd:
    def test_channel_mean_std(self) -> None:
        features = _randn(2, 3, 4, 5, seed=21)
        mean, std = channel_mean_std(features, eps=1e-5)
        torch.testing.assert_close(mean, features.mean((2, 3)))
        torch.testing.assert_close(std, (features.var((2, 3), unbiased=False) + 1e-5).sqrt())

    def test_known_values(self) -> None:
        """Channels of values ``a ± s`` (mean a, std s) against ``b ± t``."""
        eps = 1e-5

        def channel(centre: list[float], spread: list[float]) -> torch.Tensor:
            c, s = torch.tensor(centre).view(1, -1, 1, 1), torch.tensor(spread).view(1, -1, 1, 1)
            signs = torch.tensor([1.0, -1.0, 1.0, -1.0]).view(1, 1, 2, 2)
            return (c + s * signs).double()

        image, style = channel([1.0, 0.0], [2.0, 0.5]), channel([3.0, 0.5], [1.0, 0.0])
        term = MeanStdLoss(["a"], eps=eps)
        term.prepare(_targets([{"a": style}]))
        std = [math.sqrt(4 + eps), math.sqrt(0.25 + eps)]
        target_std = [math.sqrt(1 + eps), math.sqrt(eps)]
        expected = ((1 - 3) ** 2 + 0.5**2) / 2 + sum(
            (a - b) ** 2 for a, b in zip(std, target_std, strict=True)) / 2
        assert float(term(torch.zeros(1), {"a": image})) == pytest.approx(expected, rel=1e-10)
        assert float(mean_std_loss(*channel_mean_std(image, eps), *channel_mean_std(style, eps))
                     ) == pytest.approx(expected, rel=1e-10)

    def test_blend_and_partition(self) -> None:
        first, second = _randn(1, 4, 4, 6, seed=22), _randn(1, 4, 4, 6, seed=23) + 1
        blended = MeanStdLoss(["a"])
        blended.prepare(_targets([{"a": first}, {"a": second}], [0.5, 0.5]))
        pooled = MeanStdLoss(["a"])
        pooled.prepare(_targets([{"a": torch.cat([first, second], dim=3)}]))
        image = {"a": _randn(2, 4, 5, 7, seed=24)}
        value = float(blended(torch.zeros(1), image))
        assert value == pytest.approx(float(pooled(torch.zeros(1), image)), rel=1e-10)
        summed = _partition_statistics(blended, image, [2, 3])
        torch.testing.assert_close(summed["a"], blended.means(image)["a"])
        assert float(blended.loss_from_means(summed)) == pytest.approx(value, rel=1e-12)

    def test_zero_at_the_target_and_gradcheck(self) -> None:
        features = {"a": _randn(1, 3, 4, 4, seed=25)}
        term = MeanStdLoss(["a"])
        term.prepare(_targets([features]))
        assert abs(float(term(torch.zeros(1), features))) < 1e-14
        feats = _randn(1, 3, 3, 3, seed=26).requires_grad_(True)
        assert gradcheck(lambda f: term(torch.zeros(1), {"a": f}), (feats,))


# --- quantiles -----------------------------------------------------------------------------------
class TestQuantiles:
    def test_interpolation_matches_numpy(self) -> None:
        values = _randn(3, 7, seed=27).sort(-1).values
        levels = quantile_levels(7)
        at = torch.tensor([0.0, 0.05, 0.3, 0.5, 0.77, 0.99, 1.0], dtype=torch.float64)
        out = interpolate_quantiles(values, levels, at)
        for row, got in zip(values, out, strict=True):
            expected = np.interp(at.numpy(), levels.numpy(), row.numpy())
            np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-14)

    def test_same_count_is_the_sorted_values_exactly(self) -> None:
        sample = _randn(2, 9, seed=28)
        assert torch.equal(mixture_quantiles([sample], [1.0], 9), sample.sort(-1).values)

    def test_mixture_weights(self) -> None:
        """A weight-1/3 sample of {0} and a weight-2/3 sample of {1, 2}: levels 1/6, 1/2, 5/6."""
        out = mixture_quantiles([torch.tensor([[0.0]]), torch.tensor([[2.0, 1.0]])],
                                [1 / 3, 2 / 3], 3)
        torch.testing.assert_close(out, torch.tensor([[0.0, 1.0, 2.0]]))
        with pytest.raises(ValueError, match="positive weight"):
            mixture_quantiles([torch.zeros(1, 2)], [0.0], 2)


# --- sliced Wasserstein ---------------------------------------------------------------------------
class TestSlicedWasserstein:
    def test_random_directions(self) -> None:
        dirs = random_directions(5, 7, torch.Generator().manual_seed(0))
        assert dirs.shape == (7, 5)
        torch.testing.assert_close(dirs.norm(dim=1), torch.ones(7, dtype=torch.float64))
        assert torch.equal(dirs, random_directions(5, 7, torch.Generator().manual_seed(0)))

    def test_function_matches_explicit_sorting(self) -> None:
        features, style = _randn(2, 3, 4, 5, seed=29), _randn(3, 20, seed=30)
        dirs = random_directions(3, 4, torch.Generator().manual_seed(1))
        target = (dirs @ style).sort(-1).values
        value = float(sliced_wasserstein_loss(features, dirs, target))
        total = 0.0
        for b in range(2):
            projected = dirs.numpy() @ features[b].flatten(1).numpy()
            total += float(((np.sort(projected, axis=1) - target.numpy()) ** 2).mean())
        assert value == pytest.approx(total / 2, rel=1e-12)

    def test_zero_for_a_permutation_and_for_resampled_style(self) -> None:
        """Positions shuffled, or the style holding each position twice (2N positions):
        the same distribution, a loss of 0."""
        features = _randn(1, 4, 3, 5, seed=31)
        shuffled = features.flatten(2)[..., torch.randperm(15, generator=torch.Generator()
                                                           .manual_seed(0))].view(1, 4, 3, 5)
        doubled = features.repeat_interleave(2, dim=3)
        for style in (shuffled, doubled):
            term = SlicedWassersteinLoss(["a"], projections=6)
            term.prepare(_targets([{"a": style}]))
            assert abs(float(term(torch.zeros(1), {"a": features}))) < 1e-12

    def test_projections_fixed_within_a_step_redrawn_after_and_seeded(self) -> None:
        style, image = {"a": _randn(1, 4, 4, 4, seed=32)}, {"a": _randn(1, 4, 3, 5, seed=33)}

        def fresh(seed: int = 0) -> SlicedWassersteinLoss:
            term = SlicedWassersteinLoss(["a"], projections=3, seed=seed)
            term.prepare(_targets([style]))
            return term

        term = fresh()
        term.start_step(1)
        first = float(term(torch.zeros(1), image))
        dirs = term.directions("a", 4).clone()
        assert float(term(torch.zeros(1), image)) == first  # an L-BFGS line search: one objective
        term.start_step(1)
        assert torch.equal(term.directions("a", 4), dirs)
        term.start_step(2)
        assert not torch.allclose(term.directions("a", 4), dirs)
        second = float(term(torch.zeros(1), image))
        assert second != first
        again = fresh()
        for step in (1, 2):
            again.start_step(step)
        assert float(again(torch.zeros(1), image)) == second  # reproducible
        again.start_step(1)
        assert float(again(torch.zeros(1), image)) == first  # a function of (seed, step)
        other = fresh(seed=1)
        other.start_step(1)
        assert float(other(torch.zeros(1), image)) != first

    def test_default_projections_are_the_channels(self) -> None:
        term = SlicedWassersteinLoss(["a"])
        assert term.directions("a", 6).shape == (6, 6)
        with pytest.raises(ValueError, match="projections"):
            SlicedWassersteinLoss(projections=0)

    def test_blend_is_the_mixture(self) -> None:
        first, second = _randn(1, 3, 4, 4, seed=34), _randn(1, 3, 4, 4, seed=35) + 2
        image = {"a": _randn(1, 3, 4, 8, seed=36)}
        blended = SlicedWassersteinLoss(["a"])
        blended.prepare(_targets([{"a": first}, {"a": second}], [0.5, 0.5]))
        pooled = SlicedWassersteinLoss(["a"])
        pooled.prepare(_targets([{"a": torch.cat([first, second], dim=3)}]))
        assert float(blended(torch.zeros(1), image)) == pytest.approx(
            float(pooled(torch.zeros(1), image)), rel=1e-12)

    def test_gradcheck(self) -> None:
        term = SlicedWassersteinLoss(["a"], projections=4)
        term.prepare(_targets([{"a": _randn(1, 3, 3, 3, seed=37)}]))
        feats = _randn(1, 3, 2, 3, seed=38).requires_grad_(True)
        assert gradcheck(lambda f: term(torch.zeros(1), {"a": f}), (feats,))


# --- histogram -----------------------------------------------------------------------------------
class TestHistogram:
    def test_match_histograms_keeps_ranks_and_takes_values(self) -> None:
        features = _randn(2, 3, 4, 4, seed=39)
        target = _randn(3, 16, seed=40).sort(-1).values
        remapped = match_histograms(features, target)
        torch.testing.assert_close(remapped.flatten(2).sort(-1).values,
                                   target.expand(2, -1, -1))
        assert torch.equal(remapped.flatten(2).argsort(-1), features.flatten(2).argsort(-1))

    def test_self_is_zero_and_a_shift_costs_its_square(self) -> None:
        features = {"a": _randn(1, 3, 5, 4, seed=41)}
        term = HistogramLoss(["a"])
        term.prepare(_targets([features]))
        assert float(term(torch.zeros(1), features)) == 0.0
        shifted = HistogramLoss(["a"])
        shifted.prepare(_targets([{"a": features["a"] + 0.7}]))
        assert float(shifted(torch.zeros(1), features)) == pytest.approx(0.49, rel=1e-12)
        doubled = HistogramLoss(["a"])
        doubled.prepare(_targets([{"a": features["a"].repeat_interleave(3, dim=2) + 0.7}]))
        assert float(doubled(torch.zeros(1), features)) == pytest.approx(0.49, rel=1e-12)

    def test_gradient_moves_each_position_to_its_remapped_value(self) -> None:
        features = _randn(1, 2, 3, 3, seed=42).requires_grad_(True)
        target = _randn(2, 9, seed=43).sort(-1).values
        (grad,) = torch.autograd.grad(histogram_loss(features, target), features)
        expected = 2 * (features.detach() - match_histograms(features, target)) / 18
        torch.testing.assert_close(grad, expected)

    def test_blend_is_the_mixture_and_gradcheck(self) -> None:
        first, second = _randn(1, 2, 3, 4, seed=44), _randn(1, 2, 3, 4, seed=45) - 1
        blended = HistogramLoss(["a"])
        blended.prepare(_targets([{"a": first}, {"a": second}], [0.5, 0.5]))
        pooled = HistogramLoss(["a"])
        pooled.prepare(_targets([{"a": torch.cat([first, second], dim=2)}]))
        image = {"a": _randn(1, 2, 5, 5, seed=46)}
        assert float(blended(torch.zeros(1), image)) == pytest.approx(
            float(pooled(torch.zeros(1), image)), rel=1e-12)
        feats = _randn(1, 2, 2, 3, seed=47).requires_grad_(True)
        assert gradcheck(lambda f: blended(torch.zeros(1), {"a": f}), (feats,))


# --- registered terms: contract, options, descent, tiling -----------------------------------------
NEW_TERMS = {"wasserstein": WassersteinLoss, "mean_std": MeanStdLoss,
             "sliced_wasserstein": SlicedWassersteinLoss, "histogram": HistogramLoss}


@pytest.mark.parametrize("name", sorted(NEW_TERMS))
def test_registered_and_keeps_the_loss_contract(name: str) -> None:
    entry = make_host().losses.entry(name)
    assert entry.plugin == "nstkit.default_plugins.losses"
    assert entry.factory is NEW_TERMS[name]
    check_loss(entry.factory, size=24)


def test_options_models() -> None:
    host = make_host()
    sliced = host.losses.entry("sliced_wasserstein").options
    assert sliced.model_validate({"projections": 8, "seed": 3}).model_dump() == {
        "projections": 8, "seed": 3}
    for bad in ({"projections": 0}, {"seed": -1}, {"projections": 1.5}):
        with pytest.raises(ValueError, match=r"projections|seed"):
            sliced.model_validate(bad)
    for name in ("wasserstein", "mean_std"):
        with pytest.raises(ValueError, match="eps"):
            host.losses.entry(name).options.model_validate({"eps": 0})
    check_loss(SlicedWassersteinLoss, options={"projections": 3, "seed": 5}, size=24)


@pytest.mark.parametrize("name", sorted(NEW_TERMS))
def test_a_few_steps_lower_the_loss(name: str) -> None:
    before, after = _descends(NEW_TERMS[name])
    assert after < 0.8 * before


def test_tiled_evaluation_equals_the_whole_image(extractor) -> None:
    """With an overlap covering the receptive field, the statistic terms (wasserstein,
    mean_std) give the whole image's values and gradient through tiles; with one tile, every
    new term does."""
    g = torch.Generator().manual_seed(0)
    content, style = torch.rand(1, 3, 176, 240, generator=g), torch.rand(1, 3, 96, 112,
                                                                          generator=g)
    image = (content + 0.1 * torch.randn(content.shape, generator=g)).clamp(0, 1)

    def run(tile: int, overlap: int, names: list[str], shift: bool):
        terms = [WeightedTerm(n, 1.0, NEW_TERMS[n](["relu1_1", "relu3_1"])) for n in names]
        layers = feature_layers(terms, extractor)
        targets = compute_targets(extractor, layers, content, [style], [1.0])
        for term in terms:
            term.module.prepare(targets)
        whole = image.clone().requires_grad_(True)
        evaluate = WholeImage(terms, extractor, layers)
        evaluate.start_step(1)
        expected = torch.stack(evaluate(whole)).detach()
        strides = layer_strides(extractor, layers)
        grids = [TileGrid(x.shape[-2], x.shape[-1], tile, overlap, 16) for x in (content, style)]
        tiled = tiled_targets(extractor, content, [style], [1.0], grids, strides, "fp32")
        positional = prepare_tiled(terms, tiled, extractor, grids, strides, layers, "fp32")
        evaluate = TiledImage(terms, extractor, layers, "fp32", grids[0], strides, "global",
                              torch.Generator().manual_seed(3) if shift else None, positional,
                              lambda t: tile_targets(tiled, t, strides))
        evaluate.start_step(1)
        leaf = image.clone().requires_grad_(True)
        values = torch.stack(evaluate(leaf)).detach()
        return values, leaf.grad, expected, whole.grad, evaluate

    values, grad, expected, whole_grad, evaluate = run(256, 96, ["wasserstein", "mean_std"], True)
    assert len(evaluate.grid) > 2
    torch.testing.assert_close(values, expected, rtol=5e-4, atol=1e-9)
    torch.testing.assert_close(grad, whole_grad, rtol=1e-3, atol=1e-8)
    values, grad, expected, whole_grad, evaluate = run(256, 0, sorted(NEW_TERMS), False)
    assert len(evaluate.grid) == 1
    torch.testing.assert_close(values, expected, rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(grad, whole_grad, rtol=1e-4, atol=1e-8)
