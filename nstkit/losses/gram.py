"""Style losses on Gram matrices: plain (Gatys et al.) and shifted (Novak & Nikulin)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from nstkit.layers import GATYS_STYLE_LAYERS
from nstkit.losses.base import LayerSpec, StatisticLoss, flat_weights

STYLE_LAYERS = GATYS_STYLE_LAYERS


def gram_matrix(features: torch.Tensor, shift: float = 0.0) -> torch.Tensor:
    """Gram matrix ``(F + s)(F + s)^T / (H W)`` of each feature map in a batch.

    Dividing by the number of positions ``M = H W`` makes the Gram independent of image size.

    Shape:
        - features: ``(B, C, H, W)``.
        - Output: ``(B, C, C)``.
    """
    if features.dim() != 4:
        raise ValueError(f"features must be (B, C, H, W), got {tuple(features.shape)}")
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    if shift:
        flat = flat + shift
    return torch.bmm(flat, flat.transpose(1, 2)) / (h * w)


def guided_gram(features: torch.Tensor, weights: torch.Tensor, shift: float = 0.0
                ) -> torch.Tensor:
    """Guided Gram matrix (Gatys et al. 2017): ``Σ_p w_p (F_p + s)(F_p + s)^T / Σ_p w_p``, the
    Gram of the positions a mask weighs (``w = 1`` everywhere gives :func:`gram_matrix`).

    Shape:
        - features: ``(B, C, H, W)``; weights: ``(1 or B, 1, H, W)``, non-negative, with a
          positive sum per image.
        - Output: ``(B, C, C)``.
    """
    flat = features.flatten(2) + shift
    w = flat_weights({"x": weights}, "x", features)
    assert w is not None
    total = w.sum(-1, keepdim=True).expand(flat.shape[0], 1, 1)
    return torch.bmm(flat * w, flat.transpose(1, 2)) / total


def gram_loss(gram: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Gatys et al.'s ``E_l = 1/(4 N^2 M^2) Σ (G - A)^2`` with size-normalised Grams.

    With ``G = F F^T / M`` this is ``mean((G - A)^2) / 4``, averaged over the batch.

    Shape:
        - gram: ``(B, C, C)``; target: ``(B, C, C)`` or ``(1, C, C)``.
        - Output: scalar.
    """
    if gram.shape[1:] != target.shape[1:]:
        raise ValueError(f"gram {tuple(gram.shape)} and target {tuple(target.shape)} differ")
    return (gram - target).pow(2).mean() / 4


class GramLoss(StatisticLoss):
    """Style loss between Gram matrices, style images blended by their weights.

    Blending the target Grams (``A = Σ_k b_k A_k``) has the same gradient as blending the
    per-style losses and costs one comparison per layer instead of one per style. A Gram is the
    mean of ``(F + s)(F + s)^T`` over positions, so the term is a :class:`StatisticLoss`: tiles
    add up to the whole image's Gram.

    Args:
        layers: default ``relu1_1 .. relu5_1``, equal weights.
        shift: ``s`` in ``(F + s)(F + s)^T``; 0 for the classic Gram.
    """

    default_layers = STYLE_LAYERS
    default_shift = 0.0
    supports_masks = True

    def __init__(self, layers: LayerSpec = None, shift: float | None = None) -> None:
        super().__init__(layers)
        self.shift = self.default_shift if shift is None else float(shift)
        self.targets: dict[str, torch.Tensor] = {}

    def statistics(self, features: Mapping[str, torch.Tensor],
                   weights: Mapping[str, torch.Tensor] | None = None
                   ) -> dict[str, torch.Tensor]:
        """``(F + s)(F + s)^T`` summed over positions (each times its weight, if given),
        ``(B, C, C)`` per layer."""
        sums = {}
        for layer in self.layers:
            flat = features[layer].flatten(2) + self.shift
            w = flat_weights(weights, layer, features[layer])
            left = flat if w is None else flat * w
            sums[layer] = torch.bmm(left, flat.transpose(1, 2))
        return sums

    def means(self, features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {layer: gram_matrix(features[layer], self.shift) for layer in self.layers}

    def set_targets(self, style_means: Sequence[Mapping[str, torch.Tensor]],
                    blend: Sequence[float]) -> None:
        self.targets = {
            layer: sum(  # type: ignore[misc]
                weight * means[layer].detach()
                for weight, means in zip(blend, style_means, strict=True))
            for layer in self.layers
        }

    def loss_from_means(self, means: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return sum(  # type: ignore[return-value]
            weight * gram_loss(means[layer], self.targets[layer])
            for layer, weight in self.layers.items()
        )


class ShiftedGramLoss(GramLoss):
    """Gram of shifted activations ``(F - 1)(F - 1)^T`` (Novak & Nikulin 2016), ``shift=-1``."""

    default_shift = -1.0
