"""Sliced Wasserstein style loss (Heitz, Vanhoey, Chambon & Belcour, CVPR 2021): the features
projected on random directions, each projection's sorted values matched to the style's."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import torch

from nstkit.layers import GATYS_STYLE_LAYERS
from nstkit.losses.base import LayerSpec, LossTerm, Targets, positions
from nstkit.losses.quantiles import mixture_quantiles

SLICED_LAYERS = GATYS_STYLE_LAYERS


def random_directions(channels: int, count: int,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """``count`` directions drawn uniformly on the unit sphere of ``R^channels``, as rows.

    Drawn on the CPU in float64 (the same directions on every device and in every dtype).

    Shape:
        - Output: ``(count, channels)``, float64, on the CPU.
    """
    if channels < 1 or count < 1:
        raise ValueError(f"need channels >= 1 and count >= 1, got {channels} and {count}")
    draws = torch.randn(count, channels, generator=generator, dtype=torch.float64)
    return draws / draws.norm(dim=1, keepdim=True)


def sliced_wasserstein_loss(features: torch.Tensor, directions: torch.Tensor,
                            target: torch.Tensor) -> torch.Tensor:
    """``mean((sort(D F) - T)^2)``: the squared 1-D Wasserstein distances between the
    features' projections and the target's, averaged over directions (and the batch).

    Shape:
        - features: ``(B, C, H, W)``.
        - directions: ``(K, C)``, unit rows.
        - target: ``(K, H W)`` or ``(B, K, H W)``: per direction the target distribution's
          quantiles at the levels of :func:`nstkit.losses.quantiles.quantile_levels`.
        - Output: scalar.
    """
    if features.dim() != 4:
        raise ValueError(f"features must be (B, C, H, W), got {tuple(features.shape)}")
    flat = features.flatten(2)
    if directions.dim() != 2 or directions.shape[1] != flat.shape[1]:
        raise ValueError(f"directions must be (K, {flat.shape[1]}), got "
                         f"{tuple(directions.shape)}")
    if target.shape[-2:] != (directions.shape[0], flat.shape[2]):
        raise ValueError(f"target {tuple(target.shape)} does not match "
                         f"(K, H W) = {(directions.shape[0], flat.shape[2])}")
    projected = torch.matmul(directions.to(flat), flat).sort(dim=-1).values
    return (projected - target.to(projected)).pow(2).mean()


def step_seed(seed: int, step: int, layer: str) -> int:
    """A 64-bit seed for ``layer``'s directions at ``step`` of a run seeded with ``seed``."""
    digest = hashlib.blake2b(f"{seed}/{step}/{layer}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class SlicedWassersteinLoss(LossTerm):
    """Style loss matching the distributions of random 1-D projections of the features.

    Per layer the features ``(B, C, N)`` are projected on ``K`` random unit directions, each
    projection sorted and compared with the style's projection on the same direction (MSE):
    the sliced Wasserstein distance, which with fresh directions every step matches the whole
    feature distribution, not just its first two moments. With a different number of
    positions, the style's sorted projections are resampled to the image's ``N`` by linear
    interpolation of quantiles. Style images blended with weights ``b_k`` are compared as the
    mixture ``Σ b_k P_k`` (see :mod:`nstkit.losses.quantiles`).

    Directions are a function of ``seed``, the step (:meth:`start_step`) and the layer: fixed
    within a step, so every evaluation of an L-BFGS line search sees one objective, redrawn
    at the next step, and a run is reproducible. Memory: the term keeps a reference to each
    style's feature maps (no copy; the job's targets hold them anyway) and, per layer, the
    current step's directions and the style's quantiles for the image's position count,
    ``(K, N)`` (one feature map's worth with ``K = C``), recomputed once per step. Keeping the
    style's sorted projections instead would need the directions ahead of time.

    The term needs every position of a layer, so a tiled stage evaluates it per tile.

    Args:
        layers: default ``relu1_1 .. relu5_1`` (Heitz et al.), equal weights.
        projections: directions per layer; default ``None``, as many as the layer has
            channels (Heitz et al.): projecting costs about a Gram matrix (``K C N``) and the
            target is one feature map's size, while fewer directions than channels leave parts
            of the feature space unmatched in a given step.
        seed: seed of the directions (default 0).
    """

    default_layers = SLICED_LAYERS
    reads_style = True
    supports_masks = False  # sorted projections of every position: no weighted form here

    def __init__(self, layers: LayerSpec = None, projections: int | None = None,
                 seed: int = 0) -> None:
        super().__init__(layers)
        if projections is not None and projections < 1:
            raise ValueError(f"projections must be at least 1, got {projections}")
        self.projections = projections
        self.seed = int(seed)
        self.step = 0
        self.styles: dict[str, list[torch.Tensor]] = {}
        self.blend: list[float] = []
        self._directions: dict[str, torch.Tensor] = {}
        self._targets: dict[tuple[str, int, torch.dtype, torch.device], torch.Tensor] = {}

    def prepare(self, targets: Targets) -> None:
        self.styles = {layer: [features[layer].detach()[0].flatten(1)
                               for features in targets.style_features] for layer in self.layers}
        self.blend = list(targets.style_blend)
        self._targets = {}

    def start_step(self, step: int) -> None:
        """Draw new directions (those of ``step``) unless they are already the current ones."""
        if step != self.step:
            self.step = step
            self._directions, self._targets = {}, {}

    def directions(self, layer: str, channels: int) -> torch.Tensor:
        """The current step's directions at ``layer``, ``(K, channels)``, float64 on the CPU."""
        if layer not in self._directions or self._directions[layer].shape[1] != channels:
            generator = torch.Generator().manual_seed(step_seed(self.seed, self.step, layer))
            self._directions[layer] = random_directions(channels, self.projections or channels,
                                                        generator)
        return self._directions[layer]

    @torch.no_grad()
    def target(self, layer: str, count: int, like: torch.Tensor) -> torch.Tensor:
        """The style's projected quantiles for ``count`` positions at ``layer`` this step,
        ``(K, count)``, in ``like``'s dtype and on its device."""
        key = (layer, count, like.dtype, like.device)
        if key not in self._targets:
            styles: Sequence[torch.Tensor] = self.styles[layer]
            directions = self.directions(layer, styles[0].shape[0])
            projected = [torch.matmul(directions.to(style), style) for style in styles]
            self._targets[key] = mixture_quantiles(projected, self.blend, count).to(like)
        return self._targets[key]

    def forward(self, image: torch.Tensor, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        total = None
        for layer, weight in self.layers.items():
            value = features[layer]
            directions = self.directions(layer, value.shape[1])
            target = self.target(layer, positions(value), value)
            term = weight * sliced_wasserstein_loss(value, directions, target)
            total = term if total is None else total + term
        assert total is not None
        return total
