"""How much memory a stylisation needs, estimated before running it.

The estimate traces the (truncated) extractor on the ``meta`` device, so it costs no compute
and no memory, and adds up:

- ``weights``: parameters and buffers of the modules up to the deepest layer used;
- ``activations``: every module output of one forward pass per image, times the batch; the
  backward pass keeps most of them (ReLU and pooling outputs, pooling indices) and allocates
  gradients of the same sizes one layer at a time, so this sum approximates the peak of one
  forward plus backward;
- ``targets``: the content's and the styles' features at the layers the losses read (kept for
  the whole job);
- ``optimizer``: the image, its gradient and the optimiser's state in images (L-BFGS keeps two
  per remembered step: ``2 * history_size + 4``; Adam 4; SGD 3).

With ``precision="bf16"`` the activations are counted at 2 bytes (the pooling indices stay
int64). A multi-scale recipe peaks at its last (full-size) stage, which is what is estimated.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nstkit.extractors import FeatureExtractor

if TYPE_CHECKING:
    from nstkit.config import StylizeConfig

GIB = 1024 ** 3
MIB = 1024 ** 2


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes by kind for one batch of ``batch`` images of ``height x width`` pixels."""

    weights: int
    activations: int
    targets: int
    optimizer: int
    height: int
    width: int
    batch: int

    @property
    def total(self) -> int:
        return self.weights + self.activations + self.targets + self.optimizer

    def __str__(self) -> str:
        return (f"{format_bytes(self.total)} for {self.batch} x {self.height}x{self.width} px "
                f"(activations {format_bytes(self.activations)}, weights "
                f"{format_bytes(self.weights)}, targets {format_bytes(self.targets)}, image and "
                f"optimiser {format_bytes(self.optimizer)})")


def format_bytes(count: float) -> str:
    """``1536 MiB`` -> ``"1.5 GiB"``; below 1 GiB in MiB."""
    return f"{count / GIB:.1f} GiB" if count >= GIB else f"{count / MIB:.0f} MiB"


def meta_copy(extractor: FeatureExtractor) -> FeatureExtractor:
    """A copy of ``extractor`` on the ``meta`` device: runs without compute or memory."""
    return copy.deepcopy(extractor).to("meta")


def module_outputs(probe: FeatureExtractor, layers: Sequence[str], height: int,
                   width: int) -> tuple[list[tuple[nn.Module, torch.Size]], int]:
    """Every leaf module ``probe(image, layers)`` runs with its output shape, and the bytes of
    the features it returns (float32), for one ``(1, 3, height, width)`` image."""
    seen: list[tuple[nn.Module, torch.Size]] = []
    hooks = [module.register_forward_hook(
        lambda mod, _inp, out: seen.append((mod, out.shape)))
        for module in probe.modules() if not list(module.children())]
    try:
        with torch.no_grad():
            features = probe(torch.empty(1, 3, height, width, device="meta"), layers)
    finally:
        for hook in hooks:
            hook.remove()
    return seen, sum(f.numel() * 4 for f in features.values())


def optimizer_state_images(name: str, options: Mapping[str, Any] | None = None) -> int:
    """Image-sized tensors the optimiser holds, counting the image and its gradient."""
    options = dict(options or {})
    if name == "lbfgs":
        return 2 * int(options.get("history_size", 100)) + 4
    return {"adam": 4, "sgd": 3}.get(name, 4)


def estimate_memory(extractor: FeatureExtractor, layers: Sequence[str], height: int,
                    width: int, *, batch: int = 1, styles: int = 1, style_scale: float = 1.0,
                    precision: str = "fp32", optimizer: str = "lbfgs",
                    optimizer_options: Mapping[str, Any] | None = None) -> MemoryEstimate:
    """Estimate the memory of stylising ``batch`` images of ``height x width`` pixels.

    Args:
        extractor: the extractor (its weights need not be loaded: it is traced on ``meta``).
        layers: every layer the losses read (see :func:`nstkit.optimisation.feature_layers`).
        height, width: the result's size in pixels (the last stage's, for multi-scale).
        batch: content images optimised together.
        styles: style images (their features are kept as targets).
        style_scale: the styles' longest side relative to the result's.
        precision: ``"fp32"`` or ``"bf16"`` (activations at 2 bytes).
        optimizer, optimizer_options: the optimiser, for the size of its state.
    """
    layers = [extractor.resolve(layer) for layer in layers]
    run = extractor.truncated(layers) if hasattr(extractor, "truncated") else extractor
    weights = sum(t.numel() * t.element_size()
                  for t in (*run.parameters(), *run.buffers()))
    value_bytes = 2 if precision == "bf16" else 4
    probe = meta_copy(run)
    outputs, feature_bytes = module_outputs(probe, layers, height, width)
    per_image = 0
    for module, shape in outputs:
        per_image += shape.numel() * value_bytes
        if isinstance(module, nn.MaxPool2d):  # indices kept for the backward pass
            per_image += shape.numel() * 8
    style_bytes = feature_bytes
    if style_scale != 1:
        style_bytes = module_outputs(probe, layers, max(16, round(height * style_scale)),
                                     max(16, round(width * style_scale)))[1]
    image = 3 * height * width * 4 * batch
    return MemoryEstimate(
        weights=weights,
        activations=per_image * batch,
        targets=feature_bytes * batch + style_bytes * styles,
        optimizer=image * optimizer_state_images(optimizer, optimizer_options),
        height=height, width=width, batch=batch)



def result_size(height: int, width: int, size: int | None) -> tuple[int, int]:
    """The ``(height, width)`` of an image of ``height x width`` resized to longest side
    ``size`` (as :func:`nstkit.image.resize_longest` does); ``None`` keeps it."""
    if size is None:
        return height, width
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def estimate_for_recipe(config: StylizeConfig, height: int, width: int, batch: int = 1,
                        host: Any = None) -> MemoryEstimate:
    """:func:`estimate_memory` for a configuration (a recipe's ``config``) at a result size
    of ``height x width``; the extractor is built with random weights (cheap)."""
    from nstkit.components import build_terms
    from nstkit.optimisation import feature_layers
    from nstkit.plugins import get_host

    host = host or get_host()
    factory = host.extractors.get(config.extractor.name)
    options = {**config.extractor.options, "weights": "random"}
    try:
        extractor = factory(**options)
    except TypeError:  # an extractor without a weights option
        extractor = factory(**config.extractor.options)
    terms = build_terms(host, config.losses)
    return estimate_memory(extractor, feature_layers(terms, extractor), height, width,
                           batch=batch, style_scale=config.style_scale,
                           precision=config.precision, optimizer=config.optimizer.name,
                           optimizer_options=config.optimizer.options)


def available_memory(device: torch.device | str) -> int:
    """Bytes a job can still allocate on ``device``: free CUDA memory, or available RAM."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    import psutil

    return int(psutil.virtual_memory().available)
