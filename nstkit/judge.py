"""Judged distances: one fixed yardstick for every recipe, whatever the recipe optimised.

``nstkit compare`` and the benchmarks score each output with the same extractor (VGG19, the
original weights, max pooling), the same layers and the same image size. Several distances,
so that no single statistic a recipe optimises decides the comparison. Every one is a
distance: 0 is a perfect match, **lower is better**.

Content side (output ``x`` against the content image ``c``, resized to the output's shape):

- ``content``: ``||F(x) - F(c)|| / ||F(c)||`` at ``relu4_2`` (Frobenius norms); ``[0, inf)``,
  1 for an all-zero feature map.
- ``ssim``: ``1 - SSIM`` of the luma ``Y = 0.299 R + 0.587 G + 0.114 B`` (Wang et al. 2004:
  11 x 11 Gaussian window, sigma 1.5, data range 1, ``K1 = 0.01``, ``K2 = 0.03``, mean over
  the valid windows only, via :func:`kornia.metrics.ssim`); ``[0, 2]``, in practice ``[0, 1]``.

Style side (output ``x`` against the style image ``s``, both resized to ``size`` px on the
longest side; each feature term is averaged over ``relu1_1 .. relu5_1``):

- ``style``: the Gram distance ``||G(x) - G(s)|| / ||G(s)||`` with ``G = F F^T / (H W)``;
  ``[0, inf)``. Kept under its old name: the distance recipes that optimise Grams favour.
- ``w2``: the 2-Wasserstein distance between Gaussians fitted to the feature vectors (mean and
  covariance over positions), relative to the style features' root mean square norm:
  ``sqrt(W2^2 / E|F_s|^2)``; ``[0, inf)``, 1 for an all-zero feature map.
- ``sliced``: a sliced 2-Wasserstein distance between the feature vectors along
  :data:`SLICED_DIRECTIONS` fixed orthonormal directions per layer, each distribution
  summarised by :data:`QUANTILES` quantiles, relative to the same second moment along those
  directions: ``sqrt(sum_k W2_k^2 / sum_k E(theta_k . F_s)^2)``; ``[0, inf)``, 1 for zero
  features. Unlike ``w2`` it sees more than two moments (sparsity, skew, heavy tails).
- ``palette``: no network. A sliced 2-Wasserstein distance between the output's and the style
  image's pixel colours in CIELAB (D65, :func:`kornia.color.rgb_to_lab`) along
  :data:`PALETTE_DIRECTIONS` fixed directions that form whole orthonormal frames, scaled by 3:
  ``sqrt(3 mean_k W2_k^2)``. In Lab units (CIE76 Delta E): two flat colours, or any image
  against a uniformly colour-shifted copy, are exactly their Delta E apart; in general it is
  a lower bound of the full W2 between the two palettes. ``[0, ~375]``.

The relative feature distances are scale-free: multiplying all features by a constant leaves
them unchanged. The projections are drawn once from a fixed seed (:data:`PROJECTION_SEED`):
every output, every run and every :class:`Judge` uses the same directions.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from kornia.color import rgb_to_lab
from kornia.metrics import ssim as kornia_ssim

from nstkit.colour import luminance
from nstkit.image import ImageInput, load_image, resize_longest, resize_to
from nstkit.losses.gram import STYLE_LAYERS, gram_matrix

CONTENT_LAYER = "relu4_2"
JUDGE_SIZE = 512
SSIM_WINDOW = 11
SLICED_DIRECTIONS = 64
"""Directions per feature layer (rounded up to whole orthonormal frames when a layer has
fewer channels)."""
PALETTE_DIRECTIONS = 48
"""Directions in Lab: 16 random orthonormal frames of R^3."""
QUANTILES = 1024
"""Quantile levels ``(k + 1/2) / QUANTILES`` at which each projected distribution is read."""
PROJECTION_SEED = 16

METRICS = ("content", "ssim", "style", "w2", "sliced", "palette")
"""Every judged distance, in the order of :class:`Scores`; each is lower-is-better."""
CONTENT_METRICS = ("content", "ssim")
"""Closeness to the content image."""
STYLE_METRICS = ("style", "w2", "sliced", "palette")
"""Closeness to the style image (the palette included)."""
METRIC_LABELS = {"content": "content", "ssim": "1-SSIM", "style": "Gram", "w2": "W2",
                 "sliced": "sliced W2", "palette": "palette ΔE"}
"""Short names for tables and captions."""


class Features(Protocol):
    def __call__(self, image: torch.Tensor, layers: Sequence[str]) -> Mapping[str, torch.Tensor]:
        ...


@dataclass(frozen=True)
class Scores:
    """Judged distances of one output; every one is 0 for a perfect match, lower is better.

    Attributes:
        content: relative feature distance to the content image at ``relu4_2``, ``[0, inf)``.
        ssim: ``1 - SSIM`` of the luma against the content image, ``[0, 2]`` (1 - similarity,
            so 0 is identical structure).
        style: relative Gram distance to the style image, mean over the style layers,
            ``[0, inf)``.
        w2: relative Gaussian 2-Wasserstein distance of the features, ``[0, inf)``.
        sliced: relative sliced 2-Wasserstein distance of the features along fixed
            directions, ``[0, inf)``.
        palette: sliced 2-Wasserstein distance of the pixel colours in Lab, in Delta E units,
            ``[0, ~375]``.
    """

    content: float
    ssim: float
    style: float
    w2: float
    sliced: float
    palette: float

    def as_dict(self) -> dict[str, float]:
        """``{metric: value}`` in the order of :data:`METRICS`."""
        return dataclasses.asdict(self)


# --- content side ------------------------------------------------------------------------------


def relative_content_distance(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``||F - P|| / ||P||`` per image.

    Shape:
        - features: ``(B, C, H, W)``; target: ``(B, C, H, W)`` or ``(1, C, H, W)``.
        - Output: ``(B,)``.
    """
    target = target.expand_as(features)
    diff = (features - target).flatten(1).norm(dim=1)
    return diff / target.flatten(1).norm(dim=1).clamp_min(1e-12)


def ssim_distance(image: torch.Tensor, target: torch.Tensor,
                  window: int = SSIM_WINDOW) -> torch.Tensor:
    """``1 - SSIM`` of the luma of two RGB images in ``[0, 1]`` (0: identical).

    Wang et al.'s SSIM with a Gaussian window (sigma 1.5) of ``window`` taps, data range 1,
    averaged over the windows that fit inside the image (``padding='valid'``, as the reference
    implementation). An image smaller than ``window`` uses the largest odd window that fits.

    Shape:
        - image: ``(B, 3, H, W)``; target: ``(B, 3, H, W)`` or ``(1, 3, H, W)``.
        - Output: ``(B,)``.
    """
    target = target.expand_as(image)
    side = min(image.shape[-2:])
    window = min(window, side if side % 2 else side - 1)
    similarity = kornia_ssim(luminance(image), luminance(target), window, max_val=1.0,
                             eps=0.0, padding="valid")
    return 1 - similarity.flatten(1).mean(dim=1)


# --- style side --------------------------------------------------------------------------------


def relative_gram_distance(features: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    """``||G(F) - A|| / ||A||`` per image, ``G`` from :func:`nstkit.losses.gram.gram_matrix`.

    Shape:
        - features: ``(B, C, H, W)``; target_gram: ``(1, C, C)`` or ``(B, C, C)``.
        - Output: ``(B,)``.
    """
    gram = gram_matrix(features)
    target = target_gram.expand_as(gram)
    diff = (gram - target).flatten(1).norm(dim=1)
    return diff / target.flatten(1).norm(dim=1).clamp_min(1e-12)


def orthonormal_directions(dim: int, count: int,
                           seed: int = PROJECTION_SEED) -> torch.Tensor:
    """``count`` fixed unit directions in ``R^dim`` made of orthonormal frames, float64, CPU.

    With ``count <= dim``: ``count`` orthonormal directions (from the QR decomposition of a
    seeded Gaussian matrix). Otherwise ``ceil(count / dim)`` whole orthonormal bases, so that
    ``sum_k theta_k theta_k^T`` is exactly a multiple of the identity. The same ``(dim, count,
    seed)`` always gives the same directions.

    Shape:
        - Output: ``(K, dim)``, ``K = count`` or ``dim * ceil(count / dim)``.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + dim)
    frames = []
    for _ in range(math.ceil(count / dim)):
        gaussian = torch.randn(dim, min(count, dim), generator=generator, dtype=torch.float64)
        q, r = torch.linalg.qr(gaussian)
        frames.append((q * torch.sign(torch.diagonal(r))).T)  # unique: diag(r) > 0
    return torch.cat(frames)


def quantiles(values: torch.Tensor, count: int = QUANTILES) -> torch.Tensor:
    """The empirical quantile function of each row at levels ``(k + 1/2) / count``.

    Linear interpolation between the sorted samples, sample ``i`` sitting at level
    ``(i + 1/2) / N``: with ``N == count`` these are exactly the sorted samples.

    Shape:
        - values: ``(..., N)``; Output: ``(..., count)``.
    """
    n = values.shape[-1]
    ordered = values.sort(dim=-1).values
    position = ((torch.arange(count, device=values.device, dtype=torch.float64) + 0.5)
                * (n / count) - 0.5).clamp(0, n - 1)
    low = position.floor().long()
    high = (low + 1).clamp_max(n - 1)
    frac = (position - low).to(values.dtype)
    return ordered[..., low] * (1 - frac) + ordered[..., high] * frac


def projected_quantiles(points: torch.Tensor, directions: torch.Tensor,
                        count: int = QUANTILES) -> torch.Tensor:
    """Quantiles of the projections of a point cloud on each direction.

    Shape:
        - points: ``(B, C, N)`` (``N`` points of ``R^C`` per image); directions: ``(K, C)``.
        - Output: ``(B, K, count)``.
    """
    return quantiles(directions.to(points) @ points, count)


def sliced_squared(points: torch.Tensor, directions: torch.Tensor,
                   target_quantiles: torch.Tensor) -> torch.Tensor:
    """``W2_k^2`` per direction between ``points`` and the distribution behind
    ``target_quantiles`` (both read at the same quantile levels), float64.

    Shape:
        - points: ``(B, C, N)``; directions: ``(K, C)``; target_quantiles: ``(1 or B, K, Q)``.
        - Output: ``(B, K)``.
    """
    mine = projected_quantiles(points, directions, target_quantiles.shape[-1])
    return (mine.double() - target_quantiles.double()).pow(2).mean(dim=-1)


def relative_sliced_distance(features: torch.Tensor, directions: torch.Tensor,
                             target_quantiles: torch.Tensor) -> torch.Tensor:
    """``sqrt(sum_k W2_k^2 / sum_k E(theta_k . F_s)^2)`` per image: the sliced 2-Wasserstein
    distance of the feature vectors relative to the target's second moment along the same
    directions (1 for all-zero features).

    Shape:
        - features: ``(B, C, H, W)``; directions: ``(K, C)``; target_quantiles:
          ``(1 or B, K, Q)`` from :func:`projected_quantiles` of the target's features.
        - Output: ``(B,)``.
    """
    squared = sliced_squared(features.flatten(2), directions, target_quantiles).sum(dim=1)
    moment = target_quantiles.double().pow(2).mean(dim=-1).sum(dim=-1)
    return (squared / moment.clamp_min(1e-300)).sqrt().to(features.dtype)


def lab_pixels(image: torch.Tensor) -> torch.Tensor:
    """CIELAB (D65) colours of an RGB image in ``[0, 1]`` as a point cloud ``(B, 3, H W)``."""
    return rgb_to_lab(image.clamp(0, 1)).flatten(2)


def palette_distance(image: torch.Tensor, directions: torch.Tensor,
                     target_quantiles: torch.Tensor) -> torch.Tensor:
    """Sliced 2-Wasserstein distance of the Lab pixel colours, in Delta E (CIE76) units.

    ``sqrt(3 mean_k W2_k^2)`` over directions that form whole orthonormal frames of ``R^3``
    (:func:`orthonormal_directions`): since ``mean_k theta_k theta_k^T = I / 3``, two flat
    colours, or an image and a copy shifted by ``d`` in Lab, are exactly ``|d|`` apart.

    Shape:
        - image: ``(B, 3, H, W)`` RGB in ``[0, 1]``; directions: ``(K, 3)``;
          target_quantiles: ``(1 or B, K, Q)`` from :func:`projected_quantiles` of the target's
          :func:`lab_pixels`.
        - Output: ``(B,)``.
    """
    squared = sliced_squared(lab_pixels(image), directions, target_quantiles)
    return (3 * squared.mean(dim=1)).sqrt().to(image.dtype)


def feature_moments(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``(B, C)`` and covariance ``(B, C, C)`` of the feature vectors over positions
    (divided by ``H W``), in float64 (float32 where the device has no float64)."""
    flat = features.flatten(2)
    flat = flat.double() if flat.device.type != "mps" else flat.float()
    mean = flat.mean(dim=-1)
    centred = flat - mean.unsqueeze(-1)
    return mean, centred @ centred.transpose(1, 2) / flat.shape[-1]


def relative_w2_distance(features: torch.Tensor, target_mean: torch.Tensor,
                         target_cov: torch.Tensor) -> torch.Tensor:
    """``sqrt(W2^2 / E|F_s|^2)`` per image between Gaussians fitted to the feature vectors,
    ``E|F_s|^2 = |mu_s|^2 + tr(Sigma_s)`` (1 for all-zero features).

    ``W2^2 = |mu - mu_s|^2 + tr(Sigma + Sigma_s - 2 (Sigma_s^1/2 Sigma Sigma_s^1/2)^1/2)`` is
    :func:`nstkit.losses.wasserstein.gaussian_wasserstein`.

    Shape:
        - features: ``(B, C, H, W)``; target_mean: ``(1, C)``; target_cov: ``(1, C, C)``.
        - Output: ``(B,)``.
    """
    from nstkit.losses.wasserstein import gaussian_wasserstein

    mean, cov = feature_moments(features)
    target_mean, target_cov = target_mean.to(mean), target_cov.to(cov)
    squared = gaussian_wasserstein(mean, cov, target_mean.expand_as(mean),
                                   target_cov.expand_as(cov), exact=True)
    moment = target_mean.pow(2).sum(-1) + torch.diagonal(target_cov, dim1=-2, dim2=-1).sum(-1)
    return (squared.clamp_min(0) / moment.clamp_min(1e-300)).sqrt().to(features.dtype)


# --- the judge ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StyleStatistics:
    """What the judge keeps of one style image: per style layer its Gram ``(1, C, C)``,
    feature mean ``(1, C)`` and covariance ``(1, C, C)`` and projected quantiles
    ``(1, K, Q)``; and the projected quantiles of its Lab colours ``(1, K, Q)``."""

    grams: dict[str, torch.Tensor]
    means: dict[str, torch.Tensor]
    covs: dict[str, torch.Tensor]
    sliced: dict[str, torch.Tensor]
    palette: torch.Tensor


class Judge:
    """Scores outputs against their content and style images with fixed layers and size.

    Args:
        extractor: maps ``(B, 3, H, W)`` RGB in ``[0, 1]`` and layer names to features;
            ``None`` builds VGG19 with the original weights and max pooling.
        size: longest side, in pixels, the output and the style image are resized to; the
            content image is resized to the output's shape.
        device: where the features are computed.
        content_layer, style_layers: where the content and the feature style distances are
            measured.
    """

    def __init__(self, extractor: Features | None = None, size: int = JUDGE_SIZE,
                 device: str | torch.device = "cpu", content_layer: str = CONTENT_LAYER,
                 style_layers: Sequence[str] = STYLE_LAYERS) -> None:
        if extractor is None:
            from nstkit.extractors.vgg import VGGExtractor

            extractor = VGGExtractor("vgg19", pooling="max", weights="original").to(device)
        self.extractor, self.size, self.device = extractor, size, torch.device(device)
        self.content_layer, self.style_layers = content_layer, tuple(style_layers)
        self._styles: dict[str, StyleStatistics] = {}
        self._directions: dict[int, torch.Tensor] = {}
        self._palette: torch.Tensor | None = None

    def _features(self, image: torch.Tensor, layers: Sequence[str]) -> Mapping[str, torch.Tensor]:
        with torch.no_grad():
            return self.extractor(image.to(self.device), layers)

    def directions(self, channels: int) -> torch.Tensor:
        """The fixed directions ``(K, channels)`` of a layer with ``channels`` channels."""
        if channels not in self._directions:
            self._directions[channels] = orthonormal_directions(
                channels, SLICED_DIRECTIONS).to(self.device)
        return self._directions[channels]

    def palette_directions(self) -> torch.Tensor:
        """The fixed directions ``(PALETTE_DIRECTIONS, 3)`` in Lab."""
        if self._palette is None:
            self._palette = orthonormal_directions(3, PALETTE_DIRECTIONS).to(self.device)
        return self._palette

    def style_statistics(self, style: ImageInput, key: str | None = None) -> StyleStatistics:
        """Everything the style distances need of ``style``, cached under ``key``."""
        if key is not None and key in self._styles:
            return self._styles[key]
        image = resize_longest(load_image(style), self.size).to(self.device)
        with torch.no_grad():
            feats = self._features(image, self.style_layers)
            moments = {layer: feature_moments(feats[layer]) for layer in self.style_layers}
            stats = StyleStatistics(
                grams={layer: gram_matrix(feats[layer]) for layer in self.style_layers},
                means={layer: moments[layer][0] for layer in self.style_layers},
                covs={layer: moments[layer][1] for layer in self.style_layers},
                sliced={layer: projected_quantiles(
                    feats[layer].flatten(2), self.directions(feats[layer].shape[1]))
                    for layer in self.style_layers},
                palette=projected_quantiles(lab_pixels(image), self.palette_directions()))
        if key is not None:
            self._styles[key] = stats
        return stats

    def __call__(self, output: ImageInput, content: ImageInput, style: ImageInput,
                 style_key: str | None = None) -> Scores:
        """Judge one output; images as for :func:`nstkit.image.load_image` (one image each).

        ``style_key`` names the style image for the cache: a later call with the same key
        reuses its statistics whatever ``style`` is.
        """
        out = resize_longest(load_image(output), self.size).to(self.device)
        target = resize_to(load_image(content), tuple(out.shape[-2:])).to(self.device)
        layers = (self.content_layer, *self.style_layers)
        feats = self._features(torch.cat([out, target]), layers)
        stats = self.style_statistics(style, style_key)
        with torch.no_grad():
            content_dist = relative_content_distance(feats[self.content_layer][:1],
                                                     feats[self.content_layer][1:])
            ssim = ssim_distance(out, target)
            mine = {layer: feats[layer][:1] for layer in self.style_layers}
            gram = _mean([relative_gram_distance(mine[layer], stats.grams[layer])
                          for layer in self.style_layers])
            w2 = _mean([relative_w2_distance(mine[layer], stats.means[layer],
                                             stats.covs[layer])
                        for layer in self.style_layers])
            sliced = _mean([relative_sliced_distance(
                mine[layer], self.directions(mine[layer].shape[1]), stats.sliced[layer])
                for layer in self.style_layers])
            palette = palette_distance(out, self.palette_directions(), stats.palette)
        return Scores(content=float(content_dist), ssim=float(ssim), style=gram, w2=w2,
                      sliced=sliced, palette=float(palette))


def _mean(values: Sequence[torch.Tensor]) -> float:
    return float(torch.stack([v.double().reshape(()) for v in values]).mean())
