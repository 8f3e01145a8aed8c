"""Per-evaluation efficiency: one forward+backward of the truncated VGG19 against its FLOPs.

FLOPs are counted from the layer shapes (a 3x3 convolution is ``2 * 9 * C_in * C_out * H * W``
forward; its backward computes the gradient of its input only -- the weights are frozen -- at
the same cost; Gram matrices ``2 * C^2 * H * W`` each way) and cross-checked with
``torch.utils.flop_counter``. The achieved FLOP/s is reported as a fraction of the float32
matmul throughput (square ``torch.mm``) measured in the same run, interleaved with the
evaluations so that both see the same load.

Run from the repository root: ``python bench/efficiency.py [--sizes 256 512] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, load_average

from nstkit.extractors.vgg import VGGExtractor
from nstkit.losses.gram import gram_matrix
from nstkit.optimisation import extract

LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]
STYLE = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]


def counted_flops(extractor: VGGExtractor, height: int, width: int) -> int:
    """Forward + backward FLOPs of the Gatys loss from the layer shapes."""
    total, h, w = 0, height, width
    for name, module in zip(extractor.layer_names, extractor.features, strict=False):
        if isinstance(module, nn.Conv2d):
            total += 2 * 2 * 9 * module.in_channels * module.out_channels * h * w
        elif isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
            h, w = h // 2, w // 2
        if name in STYLE:
            total += 2 * 2 * module_channels(extractor, name) ** 2 * h * w
    return total


def module_channels(extractor: VGGExtractor, layer: str) -> int:
    convs = [m for m in extractor.features[: extractor.depth(layer) + 1]
             if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


def evaluation(extractor: VGGExtractor, image: torch.Tensor, precision: str = "fp32") -> None:
    features = extract(extractor, image, LAYERS, precision)
    loss = sum(gram_matrix(features[layer]).square().mean() for layer in STYLE)
    loss = loss + features["relu4_2"].square().mean()
    image.grad = None
    loss.backward()


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_flops(n: int = 2048) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n ** 3 / timed(lambda: torch.mm(a, b), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", default="fp32,channels_last,bf16")
    args = parser.parse_args()
    header("per-evaluation efficiency vs fp32 matmul throughput")
    vgg = VGGExtractor("vgg19", weights="original")
    extractor = vgg.truncated(LAYERS)
    for size in args.sizes:
        height, width = size * 3 // 4, size  # the 4:3 benchmark photo
        flops = counted_flops(vgg, height, width)
        from torch.utils.flop_counter import FlopCounterMode

        image = torch.rand(1, 3, height, width, requires_grad=True)
        with FlopCounterMode(display=False) as counter:
            evaluation(extractor, image)
        print(f"{height}x{width} px: {flops / 1e9:.1f} GFLOP per evaluation counted from the "
              f"shapes; torch.utils.flop_counter says {counter.get_total_flops() / 1e9:.1f}")
        for variant in args.variants.split(","):
            precision = "bf16" if variant == "bf16" else "fp32"
            fmt = torch.channels_last if variant == "channels_last" else torch.contiguous_format
            model = extractor.to(memory_format=fmt)
            img = torch.rand(1, 3, height, width).contiguous(memory_format=fmt)
            img.requires_grad_(True)
            mm = [matmul_flops()]
            seconds = timed(lambda m=model, i=img, p=precision: evaluation(m, i, p),
                            args.repeats)
            mm.append(matmul_flops())
            peak = statistics.mean(mm)
            print(f"  {variant:>13}: {seconds:.3f} s per forward+backward = "
                  f"{flops / seconds / 1e9:.1f} GFLOP/s; fp32 matmul {peak / 1e9:.1f} GFLOP/s "
                  f"-> {flops / seconds / peak:.0%} of matmul  [load {load_average()}]",
                  flush=True)
        extractor.to(memory_format=torch.contiguous_format)


if __name__ == "__main__":
    main()
