"""Style loss on each channel's mean and standard deviation (Huang & Belongie 2017, AdaIN)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from nstkit.losses.base import LayerSpec, StatisticLoss, flat_weights

MEAN_STD_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
"""Huang & Belongie's style layers: the first ReLU of VGG blocks 1 to 4."""


def channel_mean_std(features: torch.Tensor, eps: float = 1e-5
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each channel's mean and standard deviation ``sqrt(var + eps)`` over positions.

    ``var`` is the population variance (divided by ``H W``); ``eps`` keeps the square root
    differentiable for constant channels (dead ReLUs).

    Shape:
        - features: ``(B, C, H, W)``.
        - Output: mean ``(B, C)`` and std ``(B, C)``.
    """
    if features.dim() != 4:
        raise ValueError(f"features must be (B, C, H, W), got {tuple(features.shape)}")
    flat = features.flatten(2)
    var, mean = torch.var_mean(flat, dim=-1, correction=0)
    return mean, (var + eps).sqrt()


def mean_std_loss(mean: torch.Tensor, std: torch.Tensor, target_mean: torch.Tensor,
                  target_std: torch.Tensor) -> torch.Tensor:
    """``mean_c (mean - mean_s)^2 + mean_c (std - std_s)^2``, averaged over the batch.

    Huang & Belongie sum unsquared L2 norms over layers; the squared, channel-averaged form is
    smooth at the target (like the other style terms) and does not grow with the channel
    count, so equal layer weights weigh layers equally.

    Shape:
        - mean, std: ``(B, C)``; target_mean, target_std: ``(B, C)`` or ``(1, C)``.
        - Output: scalar.
    """
    if mean.shape[1:] != target_mean.shape[1:] or std.shape[1:] != target_std.shape[1:]:
        raise ValueError(f"statistics {tuple(mean.shape)} and targets "
                         f"{tuple(target_mean.shape)} differ")
    return (mean - target_mean).pow(2).mean() + (std - target_std).pow(2).mean()


class MeanStdLoss(StatisticLoss):
    """Style loss matching each channel's mean and standard deviation (AdaIN's style loss).

    Means of ``F`` and ``F^2`` over positions are all it needs, so the term is a
    :class:`StatisticLoss` (a tiled image matches the whole image's statistics). Style images
    blended with weights ``b_k`` give the mixture's mean and standard deviation: the first and
    second moments are blended (``E[F] = Σ b_k E_k[F]``, likewise ``E[F^2]``), and the
    variance is ``E[F^2] - E[F]^2``, as the Gram term blends second moments.

    Args:
        layers: default ``relu1_1 .. relu4_1`` (Huang & Belongie), equal weights.
        eps: added to the variance before the square root (default ``1e-5``, as AdaIN):
            bounds the gradient of a constant channel's std by ``1 / (2 sqrt(eps))``.
    """

    default_layers = MEAN_STD_LAYERS
    supports_masks = True

    def __init__(self, layers: LayerSpec = None, eps: float = 1e-5) -> None:
        super().__init__(layers)
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps}")
        self.eps = float(eps)
        self.targets: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def statistics(self, features: Mapping[str, torch.Tensor],
                   weights: Mapping[str, torch.Tensor] | None = None
                   ) -> dict[str, torch.Tensor]:
        """``F`` and ``F^2`` summed over positions (each times its weight, if given),
        stacked: ``(B, 2, C)`` per layer."""
        sums = {}
        for layer in self.layers:
            flat = features[layer].flatten(2)
            w = flat_weights(weights, layer, features[layer])
            weighted = flat if w is None else flat * w
            sums[layer] = torch.stack([weighted.sum(-1), (weighted * flat).sum(-1)], dim=1)
        return sums

    def _mean_std(self, moments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 2, C)`` moments ``E[F], E[F^2]`` to mean and std, each ``(B, C)``."""
        mean = moments[:, 0]
        var = (moments[:, 1] - mean.square()).clamp_min(0)
        return mean, (var + self.eps).sqrt()

    def set_targets(self, style_means: Sequence[Mapping[str, torch.Tensor]],
                    blend: Sequence[float]) -> None:
        self.targets = {}
        for layer in self.layers:
            moments = sum(weight * means[layer].detach()  # type: ignore[misc]
                          for weight, means in zip(blend, style_means, strict=True))
            self.targets[layer] = self._mean_std(moments)

    def loss_from_means(self, means: Mapping[str, torch.Tensor]) -> torch.Tensor:
        total = None
        for layer, weight in self.layers.items():
            target_mean, target_std = self.targets[layer]
            mean, std = self._mean_std(means[layer])
            value = weight * mean_std_loss(mean, std, target_mean.to(mean), target_std.to(std))
            total = value if total is None else total + value
        assert total is not None
        return total
