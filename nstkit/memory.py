"""How much memory a stylisation needs, estimated before running it.

What is estimated: the **peak** bytes of one job on its device, counted from a process that has
imported torch and nstkit, so including the extractor's weights and the one-off cost the first
job in a process pays. On the CPU that is the growth of the process's resident set (RSS); on
CUDA what ``torch.cuda.max_memory_allocated`` reports. What a job still needs when it starts,
with the model loaded and the runtime paid, is ``total - weights - runtime``.
``bench/scaling.py`` measures the peak RSS of a job above its process with the model loaded
(and the heap trimmed) and compares it with ``total - weights``: that process has not run a
job yet, so the runtime's cost is part of what it measures.

The extractor is traced on the ``meta`` device (no compute, no memory). The parts, each a field
of :class:`MemoryEstimate`:

- ``weights``: parameters and buffers of the extractor as given (all of them stay in memory,
  also those past the deepest layer used).
- ``activations``: what autograd saves for the backward pass in one forward pass, found by
  tracing the truncated extractor with :func:`torch.autograd.graph.saved_tensors_hooks` and
  counting each storage once. For VGG (ReLUs not in place): every ReLU output (also the next
  conv's or pool's input), every pooling output and max-pooling's int64 indices (twice the
  bytes of a float32 output), the normalised input; **not** the conv outputs, which are freed
  once their ReLU has run. The losses keep the features they read, which costs more only when
  those are copies (bf16: float32 copies of the bf16 features). With ``precision="bf16"`` the
  extractor runs at 2 bytes a value, and autocast's bf16 copies of the conv weights, which
  the backward keeps, are counted here too.
- ``backward``: the backward pass's own peak on top of that: the losses' backward runs first
  (autograd runs the nodes made last first) and leaves a float32 gradient the size of each
  feature they read until the extractor's backward reaches that layer; the largest of them (a
  Gram matrix's ``bmm`` backward gives two gradients that are then added) needs one more
  feature-sized buffer.
- ``targets``: the content's features at every layer read (all of them kept for the job) and
  each style's, float32; the content image, and each style image before and after resizing.
  A style is taken as square at its longest side (``style_scale`` times the result's longest
  side), the most pixels such a style can have, unless ``style_shape`` is given.
- ``optimizer``: image-sized vectors alive at the backward's peak, the image itself included
  (:func:`optimizer_state_images`). L-BFGS with its strong-Wolfe line search: ``2 k + 10``,
  ``k`` the pairs of its history so far (at most ``history_size``), the image, ``d`` and
  ``prev_flat_grad``, and during the line search the new direction, ``q``, ``flat_grad``, the
  search's copies of the image and of the gradient and, from its second trial on, two trial
  gradients. Without a line search ``2 k + 3`` (the image, ``d``, ``prev_flat_grad``). Adam 3
  (the image, ``exp_avg``, ``exp_avg_sq``); SGD 1 (2 with momentum). The image's gradient is
  freed at the start of each evaluation and made at the end of its backward, after the peak.
- ``runtime`` (CPU only): what the first job adds to a process whatever the image's size:
  importing ``torch._dynamo`` (``torch.optim`` does when the first optimiser is made) and the
  first forward and backward's oneDNN and OpenMP state, :data:`CPU_RUNTIME`, measured; a later
  job in the same process does not pay it again. 0 on CUDA: the CUDA context (several hundred
  MiB, seen in ``nvidia-smi``) is neither in ``max_memory_allocated`` nor in what
  ``torch.cuda.mem_get_info`` calls free, and the rest of the runtime is in host memory.
- ``allocator`` (CPU only): glibc's malloc serves blocks under its mmap threshold (raised up to
  32 MiB as large blocks are freed) from its heap, where freed blocks stay resident and are
  reused only when a later block fits, so the peak RSS exceeds the peak of live tensors. It is
  estimated as a share (:data:`CPU_HEAP_SHARE`, measured) of the bytes of the activations, the
  backward's buffers and the targets held in blocks under :data:`HEAP_BLOCK_LIMIT`; blocks of
  32 MiB or more are mapped and unmapped on their own and cost nothing extra. 0 on CUDA (what
  the caching allocator reserves beyond what it allocated is not estimated).

A multi-scale recipe peaks at its last (full-size) stage, which is what is estimated; the
L-BFGS history is bounded by that stage's steps when ``iterations`` is given (else it is full,
as in a long job).
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

CPU_RUNTIME = (149 + 36) * MIB
"""What the first job adds to a CPU process whatever the image's size, measured (torch 2.14, 2
threads): importing ``torch._dynamo``, which ``torch.optim`` does when the first optimiser is
made (149 MiB of RSS), and what the first forward and backward set up: the peak RSS less the
peak of live tensors (``torch.profiler``), measured with glibc's mmap threshold fixed
(``MALLOC_MMAP_THRESHOLD_=131072``, so that nothing freed stays resident): 34-38 MiB from 256
to 1024 px."""

CPU_HEAP_SHARE = 0.4
"""The share of the bytes of activations, backward buffers and targets in blocks under
:data:`HEAP_BLOCK_LIMIT` that glibc's heap keeps resident on top at the peak: measured
``bench/scaling.py`` peak less the peak of live tensors (``torch.profiler``) and
:data:`CPU_RUNTIME`, gatys at 3 iterations: 0.40, 0.40, 0.43 at 256, 512, 768 px; 0.61 at
1024 px, where few blocks are that small (see bench/RESULTS.md)."""

CPU_TILED_HEAP_SHARE = 1.3
""":data:`CPU_HEAP_SHARE` for a tiled stage (:mod:`nstkit.memory_plan`), of one window's
blocks: each step runs the extractor twice per tile (a no-grad pass for the whole image's
statistics, then forward and backward), on windows of several shapes (the grid moves every
step), and the heap keeps more of what they free. Measured (``bench/scaling.py``, Adam, gatys;
the peak RSS less the plan's live bytes, which matched the peak measured with
``MALLOC_MMAP_THRESHOLD_=131072`` within 2 %): 1.0-1.3 for 256 px tiles at 512-1024 px, 1.5
and 1.7 for 512 px tiles at 768 and 1024 px; with 1.3 the tiled plans came out within 8 % of
the peak, 384 px tiles (not fitted) included (bench/RESULTS.md)."""

HEAP_BLOCK_LIMIT = 32 * MIB
"""glibc's largest mmap threshold on 64-bit Linux (``DEFAULT_MMAP_THRESHOLD_MAX``)."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes by part for one batch of ``batch`` images of ``height x width`` pixels; ``total``
    is the peak (see the module's docstring for what each part counts)."""

    weights: int
    activations: int
    targets: int
    optimizer: int
    height: int
    width: int
    batch: int
    backward: int = 0
    runtime: int = 0
    allocator: int = 0

    @property
    def total(self) -> int:
        """The peak bytes: every part added up."""
        return (self.weights + self.activations + self.backward + self.targets + self.optimizer
                + self.runtime + self.allocator)

    def __str__(self) -> str:
        host = (f", runtime {format_bytes(self.runtime)}, allocator "
                f"{format_bytes(self.allocator)}") if self.runtime or self.allocator else ""
        return (f"{format_bytes(self.total)} for {self.batch} x {self.height}x{self.width} px "
                f"(activations {format_bytes(self.activations)}, backward "
                f"{format_bytes(self.backward)}, weights {format_bytes(self.weights)}, targets "
                f"{format_bytes(self.targets)}, image and optimiser "
                f"{format_bytes(self.optimizer)}{host})")


def format_bytes(count: float) -> str:
    """``1536 MiB`` -> ``"1.5 GiB"``; below 1 GiB in MiB."""
    return f"{count / GIB:.1f} GiB" if count >= GIB else f"{count / MIB:.0f} MiB"


def meta_copy(extractor: FeatureExtractor) -> FeatureExtractor:
    """A copy of ``extractor`` on the ``meta`` device: runs without compute or memory.

    The parameters and buffers go to ``meta`` without being copied first (a plain
    ``deepcopy`` would clone the weights: 80 MB for VGG19 at the start of every job)."""
    memo: dict[int, Any] = {}
    for tensor in (*extractor.parameters(), *extractor.buffers()):
        meta = tensor.detach().to("meta")
        memo[id(tensor)] = nn.Parameter(meta, requires_grad=tensor.requires_grad) \
            if isinstance(tensor, nn.Parameter) else meta
    return copy.deepcopy(extractor, memo).to("meta")


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


def saved_for_backward(probe: FeatureExtractor, layers: Sequence[str], height: int,
                       width: int, precision: str = "fp32") -> tuple[list[int], list[int]]:
    """What autograd keeps for the backward of ``probe(image, layers)`` and of losses on its
    features, for one ``(1, 3, height, width)`` image.

    ``probe`` must be on ``meta`` (see :func:`meta_copy`); with ``precision="bf16"`` it is
    traced in bfloat16, as autocast runs it. Each loss is taken to keep its input, the float32
    features (a copy in bf16).

    Returns:
        The bytes of every storage saved, each counted once (the probe's weights and the input
        image left out), and the float32 bytes of each feature.
    """
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    probe = probe.to(dtype)
    image = torch.empty(1, 3, height, width, device="meta", dtype=dtype, requires_grad=True)
    left_out = {t.untyped_storage()._cdata
                for t in (*probe.parameters(), *probe.buffers(), image)}
    saved: dict[int, int] = {}
    alive: list[torch.Tensor] = []  # storages must outlive the trace, or their ids repeat

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        alive.append(tensor)
        storage = tensor.untyped_storage()
        if storage._cdata not in left_out:
            saved[storage._cdata] = storage.nbytes()
        return tensor

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        features = probe(image, layers)
        for feature in features.values():
            feature = feature.float()
            torch.mul(feature, feature)  # a loss's op: keeps its input for the backward
    return list(saved.values()), [f.numel() * 4 for f in features.values()]


def optimizer_state_images(name: str, options: Mapping[str, Any] | None = None,
                           iterations: int | None = None) -> int:
    """Image-sized vectors the optimiser holds at the peak of an evaluation's backward, the
    image included (its gradient is freed at the start of each evaluation).

    Args:
        name, options: the optimiser and its options (``history_size``, ``line_search``,
            ``momentum``).
        iterations: steps the optimiser takes; bounds the L-BFGS history (``None``: enough
            steps to fill it).
    """
    options = dict(options or {})
    if name == "lbfgs":
        history = int(options.get("history_size", 100))
        line_search = options.get("line_search", "strong_wolfe") is not None
        if iterations is not None:  # a pair is added from the 2nd step, before its evaluations
            history = min(history, max(0, iterations - (1 if line_search else 2)))
        return 2 * history + (10 if line_search else 3)
    if name == "sgd":
        return 2 if options.get("momentum") else 1
    return {"adam": 3}.get(name, 4)


def _device_of(extractor: nn.Module) -> torch.device:
    tensor = next(iter((*extractor.parameters(), *extractor.buffers())), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def estimate_memory(extractor: FeatureExtractor, layers: Sequence[str], height: int,
                    width: int, *, batch: int = 1, styles: int = 1, style_scale: float = 1.0,
                    precision: str = "fp32", optimizer: str = "lbfgs",
                    optimizer_options: Mapping[str, Any] | None = None,
                    iterations: int | None = None,
                    style_shape: tuple[int, int] | None = None,
                    device: str | torch.device | None = None,
                    average: bool = False, heap_share: float = CPU_HEAP_SHARE
                    ) -> MemoryEstimate:
    """Estimate the peak memory of stylising ``batch`` images of ``height x width`` pixels.

    Args:
        extractor: the extractor (its weights need not be loaded: it is traced on ``meta``).
        layers: every layer the losses read (see :func:`nstkit.optimisation.feature_layers`).
        height, width: the result's size in pixels (the last stage's, for multi-scale).
        batch: content images optimised together.
        styles: style images (their features are kept as targets).
        style_scale: the styles' longest side relative to the result's.
        precision: ``"fp32"`` or ``"bf16"`` (activations at 2 bytes).
        optimizer, optimizer_options: the optimiser, for the size of its state.
        iterations: the optimiser's steps at this size (bounds the L-BFGS history; ``None``:
            enough to fill it).
        style_shape: the styles' ``(height, width)`` after resizing; default square at
            ``style_scale`` times the longest side.
        device: where the job runs (``runtime`` and ``allocator`` are the CPU's); default the
            extractor's device.
        average: the job keeps a running average of the iterates (``ema``): one more image.
        heap_share: the CPU heap's share of small blocks (``allocator``).
    """
    layers = [extractor.resolve(layer) for layer in layers]
    run = extractor.truncated(layers) if hasattr(extractor, "truncated") else extractor
    dev = torch.device(device) if device is not None else _device_of(extractor)
    weights = sum(t.numel() * t.element_size()
                  for t in (*extractor.parameters(), *extractor.buffers()))
    probe = meta_copy(run)
    saved, features = saved_for_backward(probe, layers, height, width, precision)
    cast = [p.numel() * 2 for p in run.parameters() if p.dim() > 1] \
        if precision == "bf16" else []  # autocast's copies of the weights, saved by convs
    if style_shape is None:
        side = max(16, round(max(height, width) * style_scale))
        style_shape = (side, side)
    style_features = saved_for_backward(probe, layers, *style_shape)[1] if styles else []
    image = 3 * height * width * 4 * batch
    style_image = 3 * style_shape[0] * style_shape[1] * 4
    gradients = [f * batch for f in features]
    blocks = {  # the tensors of each part, in bytes
        "activations": [s * batch for s in saved] + cast,
        "backward": [*gradients, max(gradients, default=0)],
        "targets": [*gradients, *(style_features * styles), image, *[style_image] * 2 * styles],
    }
    runtime = allocator = 0
    if dev.type != "cuda":
        runtime = CPU_RUNTIME
        allocator = round(heap_share * sum(block for part in blocks.values() for block in part
                                               if block < HEAP_BLOCK_LIMIT))
    vectors = optimizer_state_images(optimizer, optimizer_options, iterations) + average
    return MemoryEstimate(
        weights=weights, optimizer=image * vectors, height=height, width=width, batch=batch,
        runtime=runtime, allocator=allocator,
        **{name: sum(part) for name, part in blocks.items()})


def result_size(height: int, width: int, size: int | None) -> tuple[int, int]:
    """The ``(height, width)`` of an image of ``height x width`` resized to longest side
    ``size`` (as :func:`nstkit.image.resize_longest` does); ``None`` keeps it."""
    if size is None:
        return height, width
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def estimate_for_recipe(config: StylizeConfig, height: int, width: int, batch: int = 1,
                        host: Any = None, *, style_shape: tuple[int, int] | None = None,
                        device: str | torch.device = "cpu") -> MemoryEstimate:
    """:func:`estimate_memory` for a configuration (a recipe's ``config``) at a result size
    of ``height x width`` (whole image, not tiled), the L-BFGS history bounded by the steps of
    the last stage; the extractor is built with random weights (cheap)."""
    from nstkit.components import build_terms
    from nstkit.optimisation import feature_layers
    from nstkit.plugins import get_host
    from nstkit.stylisation import stage_plan

    host = host or get_host()
    factory = host.extractors.get(config.extractor.name)
    options = {**config.extractor.options, "weights": "random"}
    try:
        extractor = factory(**options)
    except TypeError:  # an extractor without a weights option
        extractor = factory(**config.extractor.options)
    terms = build_terms(host, config.losses, config.strength)
    multiscale = config.multiscale and config.multiscale.stages(max(height, width))
    stages = stage_plan(config.iterations, multiscale)
    return estimate_memory(extractor, feature_layers(terms, extractor), height, width,
                           batch=batch, style_scale=config.style_scale,
                           precision=config.precision, optimizer=config.optimizer.name,
                           optimizer_options=config.optimizer.options,
                           iterations=stages[-1][1], style_shape=style_shape, device=device,
                           average=config.ema is not None)


def available_memory(device: torch.device | str) -> int:
    """Bytes a job can still allocate on ``device``: on CUDA the free memory
    (``torch.cuda.mem_get_info``; the CUDA context, already made by then, is not in it), else
    the RAM available without swapping (``psutil``: ``MemAvailable`` on Linux, which counts
    reclaimable page cache). A container's memory limit (cgroup) is not taken into account.
    Compare it with what a job still needs: ``total - weights - runtime`` of its estimate."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    import psutil

    return int(psutil.virtual_memory().available)
