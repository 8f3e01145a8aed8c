"""The transformation network of fast style transfer (Johnson, Alahi & Fei-Fei 2016), with
instance normalisation (Ulyanov, Vedaldi & Lempitsky 2016) and upsampling by resize-convolution
(Odena, Dumoulin & Olah 2016) rather than transposed convolutions, which leave checkerboards.

Fully convolutional: any image size (padded to a multiple of 4 by reflection, cropped back).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

MAX_WIDTH = 512
MAX_BLOCKS = 32


@dataclass(frozen=True)
class NetworkSettings:
    """The shape of a :class:`TransformNet`: what a model file records to rebuild it.

    Attributes:
        width: channels of the first layer (Johnson et al.: 32); the two downsampling layers
            have ``2·width`` and ``4·width``, the residual blocks ``4·width``.
        blocks: residual blocks at a quarter of the resolution (Johnson et al.: 5).
    """

    width: int = 32
    blocks: int = 5

    def __post_init__(self) -> None:
        for name, value, top in (("width", self.width, MAX_WIDTH),
                                 ("blocks", self.blocks, MAX_BLOCKS)):
            if type(value) is not int or not 1 <= value <= top:
                raise ValueError(f"network {name} must be an integer in [1, {top}], "
                                 f"got {value!r}")

    def as_dict(self) -> dict[str, int]:
        """``{"width": ..., "blocks": ...}``, as a model file records them."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> NetworkSettings:
        """Settings from a recorded mapping; unknown or missing keys are refused.

        Raises:
            ValueError: not a mapping of exactly ``width`` and ``blocks``, or a value out of
                range.
        """
        if not isinstance(data, dict) or set(data) != {"width", "blocks"}:
            raise ValueError(f"network settings must be {{'width': N, 'blocks': N}}, got "
                             f"{str(data)[:200]}")
        return cls(width=data["width"], blocks=data["blocks"])


def pad_input(image: torch.Tensor) -> torch.Tensor:
    """``image`` ``(B, C, H, W)`` padded at the bottom and right to sides that are multiples
    of 4 and at least 8 (what the two stride-2 layers and the 9x9 padding need): by
    reflection, or by replication where the image is too small to reflect."""
    h, w = image.shape[-2:]
    pad_h, pad_w = max(8, h + -h % 4) - h, max(8, w + -w % 4) - w
    if not (pad_h or pad_w):
        return image
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(image, (0, pad_w, 0, pad_h), mode=mode)


class InstanceNorm(nn.Module):
    """Instance normalisation with a learned scale and shift per channel.

    Normally each image is normalised by its own per-channel mean and variance. Under
    :func:`recorded_statistics` it also accumulates them over every call (the tiles of a large
    image, weighted by their positions); under :func:`fixed_statistics` it uses the
    accumulated ones instead of its input's, so every tile is normalised alike (no seams).

    Shape:
        - Input: ``(B, C, H, W)``. Output: the same.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps
        self.mode = "own"  # "own", "record" or "fixed"
        self.sums: list[torch.Tensor | float] = []  # record: [Σ n·mean, Σ n·E[x²], Σ n]
        self.stats: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "fixed" and self.stats is not None:
            mean, var = self.stats
        else:
            var, mean = torch.var_mean(x.float(), dim=(2, 3), keepdim=True, correction=0)
            if self.mode == "record":
                n = x.shape[-2] * x.shape[-1]
                parts = [n * mean.detach(), n * (var + mean * mean).detach(), float(n)]
                self.sums = parts if not self.sums else [
                    a + b for a, b in zip(self.sums, parts, strict=True)]  # type: ignore[misc]
        y = (x.float() - mean) * torch.rsqrt(var + self.eps)
        return (y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)).to(x.dtype)

    def settle(self) -> None:
        """Turn the accumulated sums into the statistics :func:`fixed_statistics` uses."""
        total, squares, n = self.sums
        mean = total / n
        self.stats = (mean, (squares / n - mean * mean).clamp_min(0))  # type: ignore[operator]
        self.sums = []


class ConvLayer(nn.Sequential):
    """Reflection padding, a convolution, then (unless ``last``) instance norm and ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1,
                 last: bool = False) -> None:
        layers: list[nn.Module] = [nn.ReflectionPad2d(kernel // 2),
                                   nn.Conv2d(cin, cout, kernel, stride)]
        if not last:
            layers += [InstanceNorm(cout), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with instance norm, added to the input (no ReLU after the sum, as
    Gross & Wilber's variant used by fast-neural-style)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3)
        self.conv2 = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3),
                                   InstanceNorm(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


class Upsample(nn.Sequential):
    """Resize-convolution: nearest-neighbour upsampling by 2, then a 3x3 convolution layer."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), ConvLayer(cin, cout, 3))


class TransformNet(nn.Module):
    """Johnson et al.'s image transformation network.

    A 9x9 convolution, two stride-2 3x3 convolutions, ``blocks`` residual blocks, two
    resize-convolutions back to full size and a 9x9 convolution to RGB, squashed into
    ``[0, 1]`` by a sigmoid. Instance norm after every convolution but the last.

    Args:
        settings: width and number of residual blocks.

    Shape:
        - Input: ``(B, 3, H, W)``, RGB in ``[0, 1]``, any ``H, W >= 1``.
        - Output: ``(B, 3, H, W)``, RGB in ``[0, 1]``.
    """

    def __init__(self, settings: NetworkSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or NetworkSettings()
        w = self.settings.width
        self.down = nn.Sequential(ConvLayer(3, w, 9), ConvLayer(w, 2 * w, 3, 2),
                                  ConvLayer(2 * w, 4 * w, 3, 2))
        self.res = nn.Sequential(*(ResidualBlock(4 * w) for _ in range(self.settings.blocks)))
        self.up = nn.Sequential(Upsample(4 * w, 2 * w), Upsample(2 * w, w),
                                ConvLayer(w, 3, 9, last=True))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"the network takes (B, 3, H, W) RGB images, got "
                             f"{tuple(image.shape)}")
        h, w = image.shape[-2:]
        y = torch.sigmoid(self.up(self.res(self.down(pad_input(image)))))
        return y[..., :h, :w]


def norms(net: nn.Module) -> list[InstanceNorm]:
    """Every :class:`InstanceNorm` of ``net``, in module order."""
    return [m for m in net.modules() if isinstance(m, InstanceNorm)]


@contextlib.contextmanager
def recorded_statistics(net: nn.Module) -> Iterator[None]:
    """While the block runs, every instance norm of ``net`` accumulates the statistics it
    computes, over every call (each a batch of one image or tile); they are settled into
    per-layer means and variances when the block ends."""
    layers = norms(net)
    for layer in layers:
        layer.mode, layer.sums, layer.stats = "record", [], None
    try:
        yield
    finally:
        for layer in layers:
            layer.mode = "own"
            if layer.sums:
                layer.settle()


@contextlib.contextmanager
def fixed_statistics(net: nn.Module) -> Iterator[None]:
    """While the block runs, every instance norm of ``net`` uses the statistics recorded by
    :func:`recorded_statistics` rather than its input's; they are dropped after."""
    layers = norms(net)
    if any(layer.stats is None for layer in layers):
        raise RuntimeError("fixed_statistics needs statistics recorded first")
    for layer in layers:
        layer.mode = "fixed"
    try:
        yield
    finally:
        for layer in layers:
            layer.mode, layer.stats = "own", None


def receptive_radius(settings: NetworkSettings) -> int:
    """How far (in input pixels) an output pixel of the network sees, rounded up to a
    multiple of 4: 4 (9x9) + 1 + 2 (the stride-2 3x3s) + 8 per residual block (two 3x3 at a
    quarter of the resolution) + 2 + 1 (the resize-convolutions) + 4 (9x9), plus 4 for the
    nearest-neighbour upsampling's rounding."""
    radius = 4 + 1 + 2 + 8 * settings.blocks + 2 + 1 + 4 + 4
    return -(-radius // 4) * 4
