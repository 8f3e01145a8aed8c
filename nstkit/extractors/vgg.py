"""VGG16 / VGG19 feature extractors on torchvision's VGG definitions (no classifier)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from nstkit.errors import WeightsError
from nstkit.extractors import weights as W
from nstkit.extractors.base import FeatureExtractor, InputNormalization
from nstkit.layers import ARCH_CFG, CFGS, vgg_aliases, vgg_layer_names

DEFAULT_WEIGHTS = {"vgg16": "torchvision", "vgg19": "original"}


def _features(arch: str, pooling: str, device: str | torch.device) -> nn.Sequential:
    """torchvision's ``make_layers`` (no batch norm), with ReLUs not in place (they would
    overwrite the conv outputs we return) and average pooling if asked for."""
    layers: list[nn.Module] = []
    channels = 3
    with torch.device(device):
        for item in CFGS[ARCH_CFG[arch]]:
            if item == "M":
                layers.append(nn.AvgPool2d(kernel_size=2, stride=2) if pooling == "avg"
                              else nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1),
                           nn.ReLU(inplace=False)]
                channels = int(item)
    return nn.Sequential(*layers)


class VGGExtractor(FeatureExtractor):
    """VGG ``features`` returning named activations; stops at the deepest requested layer.

    Args:
        arch: ``"vgg16"`` or ``"vgg19"``.
        pooling: ``"max"`` or ``"avg"`` (Gatys et al. prefer average pooling).
        weights: ``"original"`` (VGG19 only), ``"torchvision"``, ``"random"`` or a ``.pth`` path;
            ``None`` picks the default (``original`` for VGG19, ``torchvision`` for VGG16).
        normalization: input convention for a file of weights: ``"torchvision"`` (RGB,
            ImageNet mean/std; the default) or ``"caffe"`` (BGR, 0-255, mean-subtracted).

    Shape:
        - Input: ``(B, 3, H, W)``, RGB in ``[0, 1]``.
        - Output: dict of layer name to ``(B, C_l, H_l, W_l)``.
    """

    def __init__(self, arch: str = "vgg19", *, pooling: str = "max",
                 weights: str | Path | None = None, normalization: str | None = None) -> None:
        super().__init__()
        if arch not in ARCH_CFG:
            raise ValueError(f"arch must be one of {sorted(ARCH_CFG)}, got {arch!r}")
        if pooling not in ("max", "avg"):
            raise ValueError(f"pooling must be 'max' or 'avg', got {pooling!r}")
        self.arch, self.pooling = arch, pooling
        self.weights = str(weights or DEFAULT_WEIGHTS[arch])
        self.layer_names = vgg_layer_names(arch)
        self.aliases = vgg_aliases(self.layer_names)
        state, norm = self._load(normalization)
        self.features = _features(arch, pooling, "cpu" if state is None else "meta")
        if state is not None:
            self._assign(state)
        self.normalize = InputNormalization(norm.mean, norm.std, norm.scale, norm.bgr)
        self.requires_grad_(False)
        self.eval()

    def _load(self, normalization: str | None) -> tuple[W.StateDict | None, W.Normalization]:
        if normalization is not None and normalization not in W.NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {sorted(W.NORMALIZATIONS)}")
        if self.weights == "original":
            if self.arch != "vgg19":
                raise WeightsError("the 'original' weights exist for vgg19 only; use "
                                   "weights='torchvision' or a file for vgg16")
            convs = {n: i for i, n in enumerate(self.layer_names) if n.startswith("conv")}
            return W.load_original(convs), W.CAFFE
        norm = W.NORMALIZATIONS[normalization or "torchvision"]
        if self.weights == "random":
            return None, norm
        if self.weights == "torchvision":
            return W.features_only(W.load_torchvision(self.arch)), W.TORCHVISION
        return W.features_only(W.read_state_file(self.weights)), norm

    def _assign(self, state: W.StateDict) -> None:
        expected = {k: v.shape for k, v in self.features.state_dict().items()}
        found = {k: v.shape for k, v in state.items()}
        if expected != found:
            missing = sorted(set(expected) - set(found))[:4]
            odd = sorted(k for k in found if k in expected and found[k] != expected[k])[:4]
            raise WeightsError(f"weights {self.weights!r} do not fit {self.arch}: missing "
                               f"{missing or 'none'}, wrong shape {odd or 'none'}")
        self.features.load_state_dict({k: v.float() for k, v in state.items()}, assign=True)

    def truncated(self, layers: Iterable[str]) -> VGGExtractor:
        """A view of this extractor without the modules after the deepest of ``layers``."""
        deepest = max(self.depth(layer) for layer in layers)
        view = object.__new__(type(self))
        nn.Module.__init__(view)
        view.__dict__.update({k: v for k, v in self.__dict__.items() if k != "_modules"})
        view.features = self.features[: deepest + 1]
        view.normalize = self.normalize
        return view

    def forward(self, image: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        wanted = {self.depth(layer): self.resolve(layer) for layer in layers}
        if not wanted:
            return {}
        out: dict[str, torch.Tensor] = {}
        x = self.normalize(image)
        for index, module in enumerate(self.features[: max(wanted) + 1]):
            x = module(x)
            if index in wanted:
                out[wanted[index]] = x
        return out

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, pooling={self.pooling!r}, weights={self.weights!r}"


def vgg16(**options: object) -> VGGExtractor:
    """VGG16 (torchvision weights by default); ``options`` as for :class:`VGGExtractor`."""
    return VGGExtractor("vgg16", **options)  # type: ignore[arg-type]


def vgg19(**options: object) -> VGGExtractor:
    """VGG19 (original weights by default); ``options`` as for :class:`VGGExtractor`."""
    return VGGExtractor("vgg19", **options)  # type: ignore[arg-type]
