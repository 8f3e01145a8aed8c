"""Colour preservation for neural style transfer.

Implements the colour-preserving methods of Gatys et al. (2016),
"Preserving Color in Neural Artistic Style Transfer":

* luminance-only transfer (:func:`luminance_only_inputs` before stylisation,
  :func:`recombine_luminance` after it);
* colour histogram matching of the style image to the content image, either
  linear (:func:`match_colour_linear`) or exact per channel
  (:func:`match_colour_histogram`);
* a chroma loss (:func:`chroma_loss`; the loss term ``colour``) that penalises
  chroma drift from a target during optimisation.

All images are RGB float tensors in ``[0, 1]`` of shape ``(B, 3, H, W)``.
Colour-space conversions use :mod:`kornia.color` (full-range BT.601 YCbCr and
CIELAB with a D65 white point).
"""

from __future__ import annotations

import torch
from kornia.color import rgb_to_lab, rgb_to_ycbcr, ycbcr_to_rgb
from torch import Tensor

__all__ = [
    "CHROMA_SPACES",
    "chroma_loss",
    "luminance",
    "luminance_only_inputs",
    "match_colour_histogram",
    "match_colour_linear",
    "recombine_luminance",
]

CHROMA_SPACES: tuple[str, ...] = ("ycbcr", "lab")
"""Colour spaces accepted by :func:`chroma_loss`."""


def _check_image(image: Tensor, name: str) -> None:
    """Raise ``ValueError`` unless ``image`` is a ``(B, 3, H, W)`` tensor."""
    if not isinstance(image, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(image).__name__}")
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"{name} must have shape (B, 3, H, W), got {tuple(image.shape)}")


def _check_same_shape(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` are images of identical shape."""
    _check_image(a, name_a)
    _check_image(b, name_b)
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def _check_content_batch(style: Tensor, content: Tensor) -> None:
    """Raise ``ValueError`` unless ``content`` has batch size 1 or that of ``style``."""
    _check_image(style, "style")
    _check_image(content, "content")
    if content.shape[0] not in (1, style.shape[0]):
        raise ValueError(
            f"content must have batch size 1 or {style.shape[0]} (the style batch size), "
            f"got content shape {tuple(content.shape)} for style shape {tuple(style.shape)}"
        )


def luminance(image: Tensor) -> Tensor:
    """Return the luma (Y of full-range BT.601 YCbCr) of an RGB image.

    Args:
        image: RGB image.

    Returns:
        ``0.299 R + 0.587 G + 0.114 B``.

    Shape:
        - image: :math:`(B, 3, H, W)`, values in ``[0, 1]``.
        - output: :math:`(B, 1, H, W)`, values in ``[0, 1]``.
    """
    _check_image(image, "image")
    return rgb_to_ycbcr(image)[:, :1]


def luminance_only_inputs(content: Tensor, style: Tensor) -> tuple[Tensor, Tensor]:
    """Build the grey inputs for luminance-only style transfer (Gatys et al. 2016).

    The content image is reduced to its luminance. The style luminance of each
    style image is affinely remapped so that its mean and (population) standard
    deviation equal those of the luminance of the **whole content batch**:
    ``Y_s' = (Y_s - mu_s) * sigma_c / sigma_s + mu_c``, then clamped to ``[0, 1]``.
    Both results are repeated to three channels so they can be fed to an RGB
    network. Stylise these, then call :func:`recombine_luminance`.

    Args:
        content: RGB content image(s).
        style: RGB style image(s); size and batch size may differ from ``content``.

    Returns:
        ``(content_grey, style_grey)``, each with three identical channels.

    Shape:
        - content: :math:`(B, 3, H, W)`, values in ``[0, 1]``.
        - style: :math:`(B_s, 3, h, w)`, values in ``[0, 1]``.
        - output: :math:`(B, 3, H, W)` and :math:`(B_s, 3, h, w)`, values in ``[0, 1]``.
    """
    _check_image(content, "content")
    _check_image(style, "style")
    y_c, y_s = luminance(content), luminance(style)
    mu_c, sigma_c = y_c.mean(), y_c.std(correction=0)
    mu_s = y_s.mean(dim=(1, 2, 3), keepdim=True)
    sigma_s = y_s.std(dim=(1, 2, 3), keepdim=True, correction=0)
    sigma_s = sigma_s.clamp_min(torch.finfo(y_s.dtype).eps)
    y_s = ((y_s - mu_s) * (sigma_c / sigma_s) + mu_c).clamp(0.0, 1.0)
    return y_c.expand(-1, 3, -1, -1).clone(), y_s.expand(-1, 3, -1, -1).clone()


def recombine_luminance(stylised: Tensor, content: Tensor) -> Tensor:
    """Combine the luminance of ``stylised`` with the chroma of ``content``.

    This produces the final output of luminance-only transfer: Y is taken from
    ``stylised`` (which may be grey or colour) and Cb, Cr from ``content``; the
    result is converted back to RGB and clamped to ``[0, 1]``.

    Args:
        stylised: Stylised image (e.g. the result of stylising the outputs of
            :func:`luminance_only_inputs`).
        content: RGB content image providing the chroma.

    Returns:
        RGB image with the stylised luminance and the content colours.

    Shape:
        - stylised: :math:`(B, 3, H, W)`, values in ``[0, 1]``.
        - content: :math:`(B, 3, H, W)`, values in ``[0, 1]``.
        - output: :math:`(B, 3, H, W)`, values in ``[0, 1]``.
    """
    _check_same_shape(stylised, content, "stylised", "content")
    ycbcr = torch.cat([luminance(stylised), rgb_to_ycbcr(content)[:, 1:]], dim=1)
    return ycbcr_to_rgb(ycbcr).clamp(0.0, 1.0)


def _mean_cov(image: Tensor) -> tuple[Tensor, Tensor]:
    """Per-image channel mean ``(B, 3, 1)`` and population covariance ``(B, 3, 3)``."""
    x = image.flatten(2)
    mu = x.mean(dim=2, keepdim=True)
    xc = x - mu
    return mu, xc @ xc.transpose(1, 2) / x.shape[2]


def _sym_pow(cov: Tensor, power: float, eps: float) -> Tensor:
    """``(cov + eps I) ** power`` for symmetric PSD ``cov`` via eigendecomposition."""
    evals, evecs = torch.linalg.eigh(cov)
    scale = (evals.clamp_min(0.0) + eps).pow(power)
    return evecs @ torch.diag_embed(scale) @ evecs.transpose(1, 2)


def match_colour_linear(style: Tensor, content: Tensor, eps: float = 1e-5) -> Tensor:
    """Give ``style`` the colour mean and covariance of ``content`` (linear transfer).

    The "image analogies" colour transfer of Gatys et al. (2016):
    ``x' = A (x - mu_s) + mu_c`` with ``A = Sigma_c^{1/2} Sigma_s^{-1/2}``, where the
    symmetric matrix square roots are computed with :func:`torch.linalg.eigh`
    and ``eps`` is added to the eigenvalues. Statistics are taken over all
    pixels of each image; a single content image is used for every style
    image, otherwise style ``i`` is matched to content ``i``. Statistics are
    computed in float64 and the result is cast back to the input dtype.

    Args:
        style: RGB style image(s) to recolour.
        content: RGB image(s) providing the target colour statistics.
        eps: Regulariser added to the covariance eigenvalues.

    Returns:
        Recoloured style image(s), clamped to ``[0, 1]``.

    Shape:
        - style: :math:`(B, 3, h, w)`, values in ``[0, 1]``.
        - content: :math:`(1, 3, H, W)` or :math:`(B, 3, H, W)`, values in ``[0, 1]``.
        - output: :math:`(B, 3, h, w)`, values in ``[0, 1]``.
    """
    _check_content_batch(style, content)
    mu_s, cov_s = _mean_cov(style.double())
    mu_c, cov_c = _mean_cov(content.double())
    a = _sym_pow(cov_c, 0.5, eps) @ _sym_pow(cov_s, -0.5, eps)
    out = a @ (style.double().flatten(2) - mu_s) + mu_c
    return out.view(style.shape).to(style.dtype).clamp(0.0, 1.0)


def match_colour_histogram(style: Tensor, content: Tensor) -> Tensor:
    """Give each channel of ``style`` the value distribution of ``content`` (exact).

    Per-channel quantile mapping: the pixel of rank ``r`` among the ``N_s``
    style pixels receives the content quantile at ``r / (N_s - 1)``, linearly
    interpolated between the sorted content values, so the pixel counts may
    differ. With equal counts the sorted output equals the sorted content
    exactly; pixel ranks are preserved (ties are broken by sort order). A single
    content image is used for every style image, otherwise style ``i`` is
    matched to content ``i``.

    Args:
        style: RGB style image(s) to recolour.
        content: RGB image(s) providing the target per-channel histograms.

    Returns:
        Recoloured style image(s), clamped to ``[0, 1]``.

    Shape:
        - style: :math:`(B, 3, h, w)`, values in ``[0, 1]``.
        - content: :math:`(1, 3, H, W)` or :math:`(B, 3, H, W)`, values in ``[0, 1]``.
        - output: :math:`(B, 3, h, w)`, values in ``[0, 1]``.
    """
    _check_content_batch(style, content)
    x = style.flatten(2)
    n_s, n_c = x.shape[2], content.shape[2] * content.shape[3]
    sorted_c = content.flatten(2).sort(dim=2).values.expand(x.shape[0], -1, -1)
    order = x.argsort(dim=2)
    ranks = torch.empty_like(order).scatter_(
        2, order, torch.arange(n_s, device=x.device).expand_as(order)
    )
    pos = ranks.double() * ((n_c - 1) / max(n_s - 1, 1))  # float64: exact ranks
    lo = pos.floor().long().clamp(0, n_c - 1)
    hi = (lo + 1).clamp(max=n_c - 1)
    weight = (pos - lo.double()).to(x.dtype)
    out = torch.lerp(sorted_c.gather(2, lo), sorted_c.gather(2, hi), weight)
    return out.view(style.shape).clamp(0.0, 1.0)


def _chroma(image: Tensor, space: str) -> Tensor:
    """Chroma channels ``(B, 2, H, W)`` of ``image`` in ``space``."""
    if space == "ycbcr":
        return rgb_to_ycbcr(image)[:, 1:]
    return rgb_to_lab(image)[:, 1:] / 100.0


def _check_space(space: str) -> None:
    """Raise ``ValueError`` unless ``space`` is one of :data:`CHROMA_SPACES`."""
    if space not in CHROMA_SPACES:
        raise ValueError(f"Unknown colour space {space!r}; expected one of {CHROMA_SPACES}")


def chroma_loss(image: Tensor, target: Tensor, space: str = "ycbcr") -> Tensor:
    """Mean squared error between the chroma channels of two images.

    For ``space="ycbcr"`` the chroma channels are Cb, Cr of full-range YCbCr
    (unit range); for ``space="lab"`` they are a*, b* of CIELAB divided by 100
    so the magnitudes are comparable. Differentiable with respect to both
    inputs. For ``"lab"``, gradients near pure black are ill-conditioned
    (cube-root singularity).

    Args:
        image: RGB image being optimised.
        target: RGB image whose chroma should be preserved.
        space: One of :data:`CHROMA_SPACES`.

    Returns:
        Scalar loss tensor.

    Shape:
        - image: :math:`(B, 3, H, W)`, values in ``[0, 1]``.
        - target: :math:`(B, 3, H, W)`, values in ``[0, 1]``.
        - output: :math:`()`, non-negative.
    """
    _check_space(space)
    _check_same_shape(image, target, "image", "target")
    return (_chroma(image, space) - _chroma(target, space)).square().mean()
