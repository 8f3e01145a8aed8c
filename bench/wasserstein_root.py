"""The `wasserstein` loss's matrix square roots side by side: ``root: eigh`` against
``root: newton_schulz`` (20 iterations), seconds per value and gradient.

For each channel count (VGG19's relu1_1..relu5_1 have 64, 128, 256, 512, 512) the loss gets a
style and an image of rank-deficient ReLU features (``positions`` each, float32, as VGG's
are), then times ``loss_from_means`` plus its backward: the part of a step that the root
costs (the features' forward and backward are the same for both). The two roots alternate
within each repeat, so load changes hit both; the median of ``--repeats`` is printed, with
the ratio and the load average. Also printed: the relative difference of the two values.

Run from the repository root: ``python bench/wasserstein_root.py [--channels 64 128 256 512]
[--positions 4096] [--repeats 5] [--device cpu]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, load_average

from nstkit.losses import Targets
from nstkit.losses.wasserstein import ROOTS, WassersteinLoss


def _features(channels: int, positions: int, seed: int, device: str) -> torch.Tensor:
    """ReLU features ``(1, C, positions, 1)`` of a source of rank ``C / 4``."""
    gen = torch.Generator().manual_seed(seed)
    rank = max(1, channels // 4)
    source = torch.randn(rank, positions, generator=gen)
    mix = torch.randn(channels, rank, generator=gen) / rank ** 0.5
    return torch.relu(mix @ source - 0.5).reshape(1, channels, positions, 1).to(device)


def _term(root: str, style: torch.Tensor) -> WassersteinLoss:
    term = WassersteinLoss(["a"], root=root)
    ref = torch.zeros(1, 3, 4, 4, device=style.device)
    term.prepare(Targets(content_image=ref, content_features={}, style_images=[ref],
                         style_features=[{"a": style}], style_blend=[1.0]))
    return term


def _time(term: WassersteinLoss, means: dict[str, torch.Tensor]) -> tuple[float, float]:
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in means.items()}
    sync = torch.cuda.synchronize if leaves["a"].is_cuda else (lambda: None)
    sync()
    start = time.perf_counter()
    value = term.loss_from_means(leaves)
    value.backward()
    sync()
    return time.perf_counter() - start, float(value.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--positions", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    header("wasserstein: eigh against Newton-Schulz square roots (value + gradient)")
    print("| channels | eigh s | newton_schulz s | newton_schulz / eigh | values differ by "
          "| load |")
    print("|---|---|---|---|---|---|", flush=True)
    for channels in args.channels:
        style = _features(channels, args.positions, 0, args.device)
        image = _features(channels, args.positions, 1, args.device) * 1.3
        terms = {root: _term(root, style) for root in ROOTS}
        means = {k: v / args.positions for k, v in terms["eigh"].statistics({"a": image}).items()}
        times: dict[str, list[float]] = {root: [] for root in ROOTS}
        values: dict[str, float] = {}
        for _ in range(args.repeats + 1):  # the first round warms up
            for root in ROOTS:
                seconds, values[root] = _time(terms[root], means)
                times[root].append(seconds)
        eigh, newton = (statistics.median(times[root][1:]) for root in ROOTS)
        differ = abs(values["eigh"] - values["newton_schulz"]) / abs(values["eigh"])
        print(f"| {channels} | {eigh:.4f} | {newton:.4f} | **{newton / eigh:.1f}** | "
              f"{differ:.1e} | {load_average()} |", flush=True)


if __name__ == "__main__":
    main()
