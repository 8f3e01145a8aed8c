"""Style loss on the 2-Wasserstein distance between Gaussian fits of the features, with a
differentiable matrix square root by an eigendecomposition or coupled Newton-Schulz
iterations."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch

from nstkit.layers import GATYS_STYLE_LAYERS
from nstkit.losses.base import LayerSpec, StatisticLoss, flat_weights

WASSERSTEIN_LAYERS = GATYS_STYLE_LAYERS

SQRTM_ITERATIONS = 20
"""Newton-Schulz iterations of :func:`sqrtm`. After normalisation by the Frobenius norm, an
eigenvalue ``x`` in ``(0, 1]`` grows by about 1.5 per iteration until it nears ``sqrt(x)``,
then converges quadratically: 20 iterations resolve ``x`` down to about ``1e-6`` (the floor
:class:`WassersteinLoss`'s ``eps = 1e-3`` keeps the spectrum above), while a rounding error
that makes an eigenvalue negative (which the iteration amplifies until it overflows) needs
about ``-1e-6`` to blow up within 20 iterations; float32 rounding is some 10-100 times smaller.
"""

ROUNDING_MARGIN = 32
""":class:`WassersteinLoss` adds ``ROUNDING_MARGIN · u · |μ - μ_s|^2`` (``u`` the dtype's
machine epsilon) to the image's covariance: the rounding error of a covariance computed from
float32 moments centred at the style's mean ``μ_s`` measured 0.5 to 2.3 ``u |μ - μ_s|^2``
(spectral norm) for 16 thousand to 1 million positions on the CPU."""


@contextlib.contextmanager
def ieee_matmuls(device: torch.device) -> Iterator[None]:
    """Full-precision float32 matrix products (no TF32) on CUDA while the block runs.

    A job runs under TF32 on CUDA (:func:`nstkit.components.fast_cuda`); its 10-bit mantissa
    would put rounding errors of about ``5e-4`` into a square root that needs ``1e-6``.
    """
    if device.type != "cuda":
        yield
        return
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9
        saved = matmul.fp32_precision
        matmul.fp32_precision = "ieee"
        try:
            yield
        finally:
            matmul.fp32_precision = saved
        return
    saved_tf32 = matmul.allow_tf32  # pragma: no cover
    matmul.allow_tf32 = False
    try:
        yield
    finally:
        matmul.allow_tf32 = saved_tf32


@contextlib.contextmanager
def _exact(device: torch.device) -> Iterator[None]:
    """No autocast (bf16 matmuls) and no TF32 while the block runs."""
    with torch.autocast(device.type, enabled=False), ieee_matmuls(device):
        yield


def _working(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in at least float32 (half-precision inputs are promoted)."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def _trace(matrix: torch.Tensor) -> torch.Tensor:
    return torch.diagonal(matrix, dim1=-2, dim2=-1).sum(-1)


def sqrtm(matrix: torch.Tensor, iterations: int = SQRTM_ITERATIONS) -> torch.Tensor:
    """Square root of symmetric positive semi-definite matrices by coupled Newton-Schulz
    iterations, differentiable by autograd.

    The matrix is symmetrised and divided by its Frobenius norm (the eigenvalues fall in
    ``[0, 1]``), then ``Y_0 = A / |A|_F``, ``Z_0 = I``, ``T = (3 I - Z Y) / 2``,
    ``Y <- Y T``, ``Z <- T Z`` for a fixed number of iterations (``Y`` tends to
    ``sqrt(A / |A|_F)``, ``Z`` to its inverse); the result is ``Y sqrt(|A|_F)``. Only matrix
    products: fast on a GPU, no eigendecomposition. Runs in float32 at least (float16 and
    bfloat16 inputs are promoted, autocast is switched off, and TF32 too), and returns that.

    Eigenvalues below about ``1.5^(-2 iterations) |A|_F`` are not fully resolved (their root
    comes out smaller); a negative eigenvalue (a matrix that is not PSD) makes the iteration
    diverge, so the caller keeps the spectrum positive (see :class:`WassersteinLoss`).

    Shape:
        - matrix: ``(..., n, n)``.
        - Output: ``(..., n, n)``.
    """
    if matrix.dim() < 2 or matrix.shape[-1] != matrix.shape[-2]:
        raise ValueError(f"sqrtm needs (..., n, n) matrices, got {tuple(matrix.shape)}")
    if iterations < 0:
        raise ValueError(f"iterations must not be negative, got {iterations}")
    with _exact(matrix.device):
        a = _working(matrix)
        a = (a + a.mT) / 2
        norm = torch.linalg.matrix_norm(a, keepdim=True).clamp_min(torch.finfo(a.dtype).tiny)
        y = a / norm
        eye = torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
        z = eye.expand_as(a)
        for _ in range(iterations):
            t = 1.5 * eye - 0.5 * (z @ y)
            y, z = y @ t, t @ z
        return y * norm.sqrt()


class _EigSqrt(torch.autograd.Function):
    """``V diag(sqrt(λ)) V^T`` from ``eigh``; the backward solves ``X H + H X = G`` in the
    eigenbasis, ``H = V (V^T G V / (s_i + s_j)) V^T`` with ``s = sqrt(λ)``: no
    ``1 / (λ_i - λ_j)`` terms, so repeated eigenvalues are harmless."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, matrix: torch.Tensor
                ) -> torch.Tensor:
        values, vectors = torch.linalg.eigh(matrix)
        roots = values.clamp_min(0).sqrt()
        ctx.save_for_backward(roots, vectors)
        return (vectors * roots.unsqueeze(-2)) @ vectors.mT

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
                 ) -> torch.Tensor:
        roots, vectors = ctx.saved_tensors  # type: ignore[attr-defined]
        floor = torch.finfo(roots.dtype).eps * roots.amax(-1, keepdim=True).unsqueeze(-1)
        sums = (roots.unsqueeze(-1) + roots.unsqueeze(-2)).clamp_min(floor)
        return vectors @ ((vectors.mT @ grad @ vectors) / sums) @ vectors.mT


def sqrtm_eig(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of symmetric positive semi-definite matrices by an eigendecomposition,
    differentiable (the gradient solves a Sylvester equation in the eigenbasis; the same
    construction crowsonkb/style-transfer-pytorch ships beside the Newton-Schulz root its W2
    loss uses). Negative eigenvalues (rounding) are taken as 0. Exact to the dtype's precision
    at any spectrum, unlike :func:`sqrtm`, and on the CPU about ten times faster than it at 512
    channels (bench/wasserstein_root.py); on a GPU, not measured.
    Runs in float32 at least (half-precision inputs are promoted, no autocast or TF32) and
    returns that.

    Shape:
        - matrix: ``(..., n, n)``.
        - Output: ``(..., n, n)``.
    """
    if matrix.dim() < 2 or matrix.shape[-1] != matrix.shape[-2]:
        raise ValueError(f"sqrtm_eig needs (..., n, n) matrices, got {tuple(matrix.shape)}")
    with _exact(matrix.device):
        a = _working(matrix)
        return _EigSqrt.apply((a + a.mT) / 2)


ROOTS = ("eigh", "newton_schulz")
"""How :func:`gaussian_wasserstein` takes its square roots: :func:`sqrtm_eig` or
:func:`sqrtm`."""


def sqrtm_eigh(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of symmetric PSD matrices by an eigendecomposition in float64 (negative
    eigenvalues, from rounding, taken as 0), for constants such as a style's covariance: exact
    but slow on a GPU, and not meant for backpropagation. Returns float64.

    Shape:
        - matrix: ``(..., n, n)``.
        - Output: ``(..., n, n)``, float64, on ``matrix``'s device.
    """
    a = matrix.detach().double()
    values, vectors = torch.linalg.eigh((a + a.mT) / 2)
    return (vectors * values.clamp_min(0).sqrt().unsqueeze(-2)) @ vectors.mT


def gaussian_wasserstein(mean: torch.Tensor, cov: torch.Tensor, target_mean: torch.Tensor,
                         target_cov: torch.Tensor, *, target_sqrt: torch.Tensor | None = None,
                         root: str = "eigh", iterations: int = SQRTM_ITERATIONS,
                         exact: bool = False
                         ) -> torch.Tensor:
    """Squared 2-Wasserstein distance between Gaussians ``N(mean, cov)`` and
    ``N(target_mean, target_cov)``:
    ``|μ - μ_t|^2 + tr(S + S_t - 2 (S_t^1/2 S S_t^1/2)^1/2)``.

    The outer square root is :func:`sqrtm_eig` (``root="eigh"``) or :func:`sqrtm` with
    ``iterations`` (``root="newton_schulz"``); ``S_t^1/2`` too unless given as
    ``target_sqrt`` (precomputed once for a fixed target). Runs in float32 at least, without
    autocast or TF32. ``exact=True`` takes both roots by :func:`sqrtm_eigh` instead (float64,
    not for backpropagation: for measuring, where the Newton-Schulz root leaves a small
    positive bias on rank-deficient covariances, such as few positions for many channels).

    Shape:
        - mean: ``(B, C)``; cov: ``(B, C, C)``, symmetric PSD.
        - target_mean: ``(B, C)`` or ``(1, C)``; target_cov, target_sqrt: ``(B, C, C)`` or
          ``(1, C, C)``.
        - Output: ``(B,)``.
    """
    c = mean.shape[-1]
    if cov.shape[-2:] != (c, c) or target_mean.shape[-1] != c or target_cov.shape[-2:] != (c, c):
        raise ValueError(f"means {tuple(mean.shape)}, {tuple(target_mean.shape)} and "
                         f"covariances {tuple(cov.shape)}, {tuple(target_cov.shape)} differ")
    with _exact(mean.device):
        mean, cov = _working(mean), _working(cov)
        target_mean, target_cov = target_mean.to(mean), target_cov.to(cov)
        if exact:
            mean, cov = mean.double(), cov.double()
            target_mean, target_cov = target_mean.double(), target_cov.double()
        root_of = _root_function(root, iterations, exact)
        root = root_of(target_cov) if target_sqrt is None else target_sqrt.to(cov)
        cross = root_of(root @ cov @ root)
        return ((mean - target_mean).pow(2).sum(-1) + _trace(cov) + _trace(target_cov)
                - 2 * _trace(cross))


def _root_function(root: str, iterations: int, exact: bool
                   ) -> Callable[[torch.Tensor], torch.Tensor]:
    if root not in ROOTS:
        raise ValueError(f"root must be one of {', '.join(ROOTS)}, got {root!r}")
    if exact:
        return sqrtm_eigh
    return sqrtm_eig if root == "eigh" else functools.partial(sqrtm, iterations=iterations)


class WassersteinLoss(StatisticLoss):
    """Style loss: the 2-Wasserstein distance between Gaussian fits of the image's and the
    style's features, per layer, divided by the number of channels.

    Each layer's features are summarised by their mean ``μ`` ``(C,)`` and covariance ``S``
    ``(C, C)`` over positions, and compared in closed form (:func:`gaussian_wasserstein`),
    which unlike a Gram matrix separates the mean from the spread and weighs the covariance's
    differences by its own scale. ``μ = E[F]`` and ``S = E[F F^T] - μ μ^T`` are means over
    positions, so the term is a :class:`StatisticLoss` and tiles exactly like the Gram term:
    its statistic is the Gram matrix of the features with a row of ones appended,
    ``(C + 1, C + 1)``, holding both sums. Style images blended with weights ``b_k`` give the
    Gaussian of their mixture's moments: ``E[F]`` and ``E[F F^T]`` are blended, as the Gram
    term blends its Grams. The style's ``(S_s + ε I)^1/2`` is computed once, in float64, when
    the targets are set.

    Numerics (float32 included, the rest in at least float32 without TF32):

    - ``eps``: both covariances get ``ε I`` with ``ε = eps · |S_s|_F``: the distance between
      the two Gaussians each blurred by ``N(0, ε I)``, still zero exactly at the target and
      minimised there. It bounds the spectrum of ``S_s^1/2 S S_s^1/2`` below by ``ε^2``, so the
      gradient of its square root (``1 / (2 sqrt(λ))``, unbounded near 0, and feature
      covariances are rank-deficient) stays below ``1 / (2 ε)``, and the Newton-Schulz
      iterations (``root: newton_schulz``) converge; only variances below ``ε`` (0.1 % of
      the style's scale by default) are smoothed out.
    - The statistics are centred at the style's mean (a constant, so tiling stays exact):
      computing a covariance as ``E[F F^T] - μ μ^T`` loses digits as ``|μ|^2`` grows. What
      is left grows with ``|μ - μ_s|^2``, and the image's covariance gets that much more
      ridge (:data:`ROUNDING_MARGIN`): zero at the target, and in float32 at most
      ``C · 32 u = 0.2 %`` of the mean term's size added to the value at ``C = 512``. Without
      it, rounding makes the covariance indefinite when the image's mean is far from the
      style's (early in a run), and the square root diverges.

    Args:
        layers: default ``relu1_1 .. relu5_1``, equal weights.
        eps: the covariances' ridge relative to the style covariance's Frobenius norm
            (default ``1e-3``).
        root: ``"eigh"`` (default; :func:`sqrtm_eig`, exact, the faster on a CPU) or
            ``"newton_schulz"`` (:func:`sqrtm`, only matrix products; may pay on a GPU).
        iterations: Newton-Schulz iterations (default :data:`SQRTM_ITERATIONS`).
    """

    default_layers = WASSERSTEIN_LAYERS
    supports_masks = True

    def __init__(self, layers: LayerSpec = None, eps: float = 1e-3, root: str = "eigh",
                 iterations: int = SQRTM_ITERATIONS) -> None:
        super().__init__(layers)
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps}")
        _root_function(root, iterations, exact=False)  # validates root
        self.eps, self.root, self.iterations = float(eps), root, int(iterations)
        self.center: dict[str, torch.Tensor] = {}
        self.targets: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}

    def statistics(self, features: Mapping[str, torch.Tensor],
                   weights: Mapping[str, torch.Tensor] | None = None
                   ) -> dict[str, torch.Tensor]:
        """``[F - c; 1] [F - c; 1]^T`` summed over positions (each times its weight, if
        given), ``(B, C + 1, C + 1)`` per layer (``c`` the style's mean once the targets are
        set, else 0): the sums of ``F - c`` in the last column and row, the number of
        positions (the sum of the weights) in the corner."""
        sums = {}
        for layer in self.layers:
            flat = _working(features[layer].flatten(2))
            if layer in self.center:
                flat = flat - self.center[layer].to(flat).unsqueeze(-1)
            w = flat_weights(weights, layer, flat.unflatten(-1, features[layer].shape[-2:]))
            left = flat if w is None else flat * w
            with _exact(flat.device):
                second = left @ flat.mT
            first = left.sum(-1)
            count = torch.full_like(first[:, :1], flat.shape[-1]) if w is None \
                else w.sum(-1).expand(first.shape[0], 1).to(first)
            top = torch.cat([second, first.unsqueeze(-1)], dim=-1)
            bottom = torch.cat([first, count], dim=-1).unsqueeze(1)
            sums[layer] = torch.cat([top, bottom], dim=1)
        return sums

    @staticmethod
    def _moments(means: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, C + 1, C + 1)`` means to the centred mean ``(B, C)`` and covariance
        ``(B, C, C)``."""
        c = means.shape[-1] - 1
        first, second = means[:, :c, c], means[:, :c, :c]
        cov = second - first.unsqueeze(-1) * first.unsqueeze(-2)
        return first, (cov + cov.mT) / 2

    def set_targets(self, style_means: Sequence[Mapping[str, torch.Tensor]],
                    blend: Sequence[float]) -> None:
        """Keep each layer's style covariance, plus ``ε I``, and its square root, and centre
        the statistics at the style's mean from now on. ``style_means`` must come from
        :meth:`statistics` with the centre it has when this is called."""
        targets, center = {}, {}
        for layer in self.layers:
            like = style_means[0][layer]
            moments = sum(weight * means[layer].detach().double()  # type: ignore[misc]
                          for weight, means in zip(blend, style_means, strict=True))
            first, cov = self._moments(moments)
            old = self.center.get(layer)
            mean = first[0] if old is None else first[0] + old.to(first)
            ridge = self.eps * float(torch.linalg.matrix_norm(cov[0])) or self.eps
            cov = cov + ridge * torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
            targets[layer] = (cov.to(like), sqrtm_eigh(cov).to(like), ridge)
            center[layer] = mean.to(like)
        self.targets, self.center = targets, center

    def loss_from_means(self, means: Mapping[str, torch.Tensor]) -> torch.Tensor:
        total = None
        for layer, weight in self.layers.items():
            target_cov, target_sqrt, ridge = self.targets[layer]
            first, cov = self._moments(_working(means[layer]))
            channels = first.shape[-1]
            rounding = ROUNDING_MARGIN * torch.finfo(first.dtype).eps * first.pow(2).sum(-1)
            eye = torch.eye(channels, device=cov.device, dtype=cov.dtype)
            cov = cov + (ridge + rounding)[:, None, None] * eye
            distance = gaussian_wasserstein(first, cov, first.new_zeros(1, channels), target_cov,
                                            target_sqrt=target_sqrt, root=self.root,
                                            iterations=self.iterations)
            value = weight * distance.mean() / channels
            total = value if total is None else total + value
        assert total is not None
        return total
