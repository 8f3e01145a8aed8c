"""The MRF style loss of Li & Wand (2016), *Combining Markov random fields and convolutional
neural networks for image synthesis*: every ``k x k`` neural patch of the image is matched to
the style patch with the highest normalised cross-correlation, and the loss pulls it towards
that patch.

Each op is a function; :class:`MRFLoss` is the ``nstkit.losses.LossTerm`` calling them.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from nstkit.losses import LossTerm, Targets
from nstkit.losses.base import LayerSpec

MRF_LAYERS = ("relu3_1", "relu4_1")
_EPS = 1e-8


def _check_features(features: torch.Tensor, patch_size: int, what: str = "features") -> None:
    if features.dim() != 4:
        raise ValueError(f"{what} must be (B, C, H, W), got {tuple(features.shape)}")
    h, w = features.shape[-2:]
    if min(h, w) < patch_size:
        raise ValueError(f"{what} are {h}x{w}, smaller than the {patch_size}x{patch_size} "
                         "patches: use a larger image or a shallower layer")


def extract_patches(features: torch.Tensor, patch_size: int = 3,
                    stride: int = 1) -> torch.Tensor:
    """Every ``k x k`` patch of each feature map, flattened, in ``conv2d``'s output order.

    Args:
        features: the feature maps.
        patch_size: ``k``.
        stride: step between patches, in feature positions.

    Shape:
        - features: ``(B, C, H, W)`` with ``H, W >= k``.
        - Output: ``(B, L, C·k·k)``; ``L = H'·W'`` with ``H' = (H - k) // stride + 1`` (and
          ``W'`` alike), positions in row-major order.
    """
    _check_features(features, patch_size)
    return F.unfold(features, patch_size, stride=stride).transpose(1, 2)


def style_patches(features: list[torch.Tensor], patch_size: int = 3,
                  stride: int = 1) -> torch.Tensor:
    """The patches of one or more style feature maps, pooled into one bank.

    Shape:
        - features: each ``(1, C, h_i, w_i)`` (sizes may differ, ``C`` may not).
        - Output: ``(N, C, k, k)``, ``N`` the total number of patches.
    """
    banks = []
    for feature in features:
        _check_features(feature, patch_size, "style features")
        flat = extract_patches(feature, patch_size, stride).flatten(0, 1)  # (B·L, C·k·k)
        banks.append(flat.reshape(-1, feature.shape[1], patch_size, patch_size))
    return torch.cat(banks).detach()


def match_patches(features: torch.Tensor, patches: torch.Tensor, *, stride: int = 1,
                  chunk_size: int = 1024) -> torch.Tensor:
    """For each patch of ``features``, the index of the style patch with the highest normalised
    cross-correlation ``<p, q> / (|p| |q|)``. No gradient flows through the matching.

    ``|p|`` is the same for every candidate ``q``, so the argmax of ``conv2d(features,
    q / |q|)`` is the argmax of the normalised cross-correlation. The style patches are
    convolved ``chunk_size`` at a time, which bounds the memory to ``B·chunk_size·L`` scores.

    Shape:
        - features: ``(B, C, H, W)``.
        - patches: ``(N, C, k, k)``.
        - Output: ``(B, L)`` indices into ``patches`` (``torch.long``), positions as in
          :func:`extract_patches` with the same ``stride``.
    """
    if features.shape[1] != patches.shape[1]:
        raise ValueError(f"features have {features.shape[1]} channels, the style patches "
                         f"{patches.shape[1]}")
    _check_features(features, patches.shape[-1])
    with torch.no_grad():
        features = features.detach()
        norms = patches.flatten(1).norm(dim=1).clamp_min(_EPS).view(-1, 1, 1, 1)
        best_score = best_index = None
        for start in range(0, patches.shape[0], chunk_size):
            kernel = patches[start:start + chunk_size] / norms[start:start + chunk_size]
            scores = F.conv2d(features, kernel, stride=stride).flatten(2)  # (B, n, L)
            score, index = scores.max(dim=1)
            index = index + start
            if best_score is None or best_index is None:
                best_score, best_index = score, index
            else:
                better = score > best_score
                best_score = torch.where(better, score, best_score)
                best_index = torch.where(better, index, best_index)
    assert best_index is not None
    return best_index


def mrf_loss(features: torch.Tensor, patches: torch.Tensor, *, stride: int = 1,
             chunk_size: int = 1024) -> torch.Tensor:
    """Mean squared distance between each patch of ``features`` and its matched style patch.

    Li & Wand's ``E_s = Σ_i ||Ψ_i(Φ(x)) - Ψ_NN(i)(Φ(x_s))||²`` divided by the number of
    terms ``B·L·C·k·k``, so the value does not grow with the image size (as nstkit's other
    losses). The matching (:func:`match_patches`) is recomputed at every call and is constant
    for the gradient.

    Args:
        features: the image's features at one layer.
        patches: the style patches of that layer (:func:`style_patches`).
        stride: step between the image's patches.
        chunk_size: style patches matched per ``conv2d`` call.

    Shape:
        - features: ``(B, C, H, W)`` with ``H, W >= k``.
        - patches: ``(N, C, k, k)``.
        - Output: scalar.
    """
    patches = patches.to(device=features.device, dtype=features.dtype)
    index = match_patches(features, patches, stride=stride, chunk_size=chunk_size)  # (B, L)
    own = extract_patches(features, patches.shape[-1], stride)  # (B, L, C·k·k)
    matched = patches.flatten(1)[index]  # (B, L, C·k·k)
    return (own - matched).pow(2).mean()


class MRFLoss(LossTerm):
    """MRF style loss (Li & Wand 2016) at one or more layers, default ``relu3_1``, ``relu4_1``.

    The style patches are extracted once per job in :meth:`prepare`, from every style image
    with a non-zero blend weight (pooled into one bank: matching picks the nearest patch of any
    of them). Memory: the bank holds ``N·C·k·k`` values per layer, ``N ≈ h·w / style_stride²``.

    Args:
        layers: layer names (equal weights) or ``{layer: weight}``.
        patch_size: ``k``, the side of the neural patches (3 in the paper).
        style_stride: step between the style patches; 2 quarters the bank for large styles.
        image_stride: step between the image's patches.
        chunk_size: style patches matched per ``conv2d`` call (bounds the memory of matching).
    """

    default_layers = MRF_LAYERS
    reads_style = True

    def __init__(self, layers: LayerSpec = None, patch_size: int = 3, style_stride: int = 1,
                 image_stride: int = 1, chunk_size: int = 1024) -> None:
        super().__init__(layers)
        for name, value in (("patch_size", patch_size), ("style_stride", style_stride),
                            ("image_stride", image_stride), ("chunk_size", chunk_size)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.patch_size, self.style_stride = int(patch_size), int(style_stride)
        self.image_stride, self.chunk_size = int(image_stride), int(chunk_size)
        self.patches: dict[str, torch.Tensor] = {}

    def prepare(self, targets: Targets) -> None:
        """Extract the style patches of every layer: ``(N, C, k, k)`` each."""
        styles = [features for blend, features in
                  zip(targets.style_blend, targets.style_features, strict=True) if blend > 0]
        self.patches = {
            layer: style_patches([features[layer] for features in styles], self.patch_size,
                                 self.style_stride)
            for layer in self.layers
        }

    def forward(self, image: torch.Tensor, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Σ over layers of ``weight · mrf_loss``; ``features[layer]`` is ``(B, C, H, W)``."""
        if not self.patches:
            raise RuntimeError("MRFLoss.prepare() must be called before forward()")
        return sum(  # type: ignore[return-value]
            weight * mrf_loss(features[layer], self.patches[layer], stride=self.image_stride,
                              chunk_size=self.chunk_size)
            for layer, weight in self.layers.items()
        )
