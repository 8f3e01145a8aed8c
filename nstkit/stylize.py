"""The Python API: :func:`stylize` an image with components looked up in the plugin registry."""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from nstkit import colour
from nstkit.engine import (
    PRECISIONS,
    StyleCache,
    WeightedTerm,
    compute_targets,
    feature_layers,
    optimise,
)
from nstkit.errors import NstkitError, PluginError
from nstkit.extractors import FeatureExtractor
from nstkit.image import ImageInput, load_image, resize_longest, resize_to
from nstkit.job import JobInfo
from nstkit.losses import LossTerm
from nstkit.plugins import PluginHost, get_host
from nstkit.registry import factory_key
from nstkit.result import StyleResult

DEFAULT_STYLE_WEIGHT = 1e-3  # tuned for the original (Caffe-scale) VGG19 weights
PRESERVE_COLOUR = ("luminance", "linear", "histogram")


@dataclass
class LossSpec:
    """One loss term of a stylisation: registry ``name``, ``weight``, ``layers`` and options."""

    name: str
    weight: float = 1.0
    layers: Sequence[str] | Mapping[str, float] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    label: str | None = None

    @classmethod
    def coerce(cls, spec: LossSpec | Mapping[str, Any]) -> LossSpec:
        if isinstance(spec, LossSpec):
            return spec
        spec = dict(spec)
        known = {k: spec.pop(k) for k in ("name", "weight", "layers", "label") if k in spec}
        return cls(**known, options=spec)


def default_losses(content_layers: Any, style_layers: Any, content_weight: float,
                   style_weight: float, tv_weight: float, style_loss: str) -> list[LossSpec]:
    """Gatys et al. 2016: content at ``relu4_2``, Gram style at ``relu1_1 .. relu5_1``."""
    specs = [LossSpec("content", content_weight, content_layers),
             LossSpec(style_loss, style_weight, style_layers)]
    if tv_weight:
        specs.append(LossSpec("tv", tv_weight))
    return specs


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when available, else the CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextlib.contextmanager
def fast_cuda(device: torch.device) -> Iterator[None]:
    """On CUDA, TF32 for float32 matmuls and convolutions while the block runs (restored
    after); elsewhere nothing."""
    if device.type != "cuda":
        yield
        return
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9
        saved = matmul.fp32_precision, conv.fp32_precision
        matmul.fp32_precision = conv.fp32_precision = "tf32"
        try:
            yield
        finally:
            matmul.fp32_precision, conv.fp32_precision = saved
        return
    saved = matmul.allow_tf32, torch.backends.cudnn.allow_tf32  # pragma: no cover
    matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def memory_format(device: torch.device) -> torch.memory_format:
    """``channels_last`` on CUDA (cuDNN's fast layout for convolutions), else contiguous."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


EXTRACTOR_CACHE_SIZE = 4
_extractors: OrderedDict[Hashable, FeatureExtractor] = OrderedDict()


def build_extractor(host: PluginHost, name: str, device: torch.device,
                    **options: Any) -> FeatureExtractor:
    """The extractor ``name`` on ``device``, built once per factory, options and device.

    The last ``EXTRACTOR_CACHE_SIZE`` extractors are kept (a VGG19 holds 80 MB of weights), so
    a long process that meets many weight files or options does not keep them all. Equal
    factories share entries, whichever plugin host asks (each new host registers new
    ``functools.partial`` objects for the built-ins).

    Raises:
        NstkitError: the extractor failed to build, or there is no room for it on the GPU.
    """
    entry = host.extractors.entry(name)
    key = (factory_key(entry.factory), device,
           tuple(sorted((k, str(v)) for k, v in options.items())))
    if key in _extractors:
        _extractors.move_to_end(key)
        return _extractors[key]
    try:
        extractor = entry.factory(**options)
    except (NstkitError, ValueError, TypeError):
        raise
    except Exception as exc:
        raise PluginError(entry.plugin, f"extractor {name!r} failed: {exc}") from exc
    try:
        _extractors[key] = extractor.to(device, memory_format=memory_format(device))
    except torch.cuda.OutOfMemoryError as exc:
        raise NstkitError(f"CUDA out of memory moving extractor {name!r} to {device} "
                          f"({exc}); free the GPU or use --device cpu") from None
    while len(_extractors) > EXTRACTOR_CACHE_SIZE:
        _extractors.popitem(last=False)
    return _extractors[key]


def build_terms(host: PluginHost, specs: Sequence[LossSpec]) -> list[WeightedTerm]:
    """Instantiate each loss term through its registered factory (weight 0 terms dropped)."""
    terms, seen = [], {}
    for spec in specs:
        if not spec.weight:
            continue
        entry = host.losses.entry(spec.name)
        module = entry.factory(layers=spec.layers, **spec.options)
        if not isinstance(module, LossTerm):
            raise PluginError(entry.plugin, f"loss {spec.name!r} factory returned "
                              f"{type(module).__name__}, not an nstkit.losses.LossTerm")
        seen[spec.name] = seen.get(spec.name, 0) + 1
        count = seen[spec.name]
        label = spec.label or (spec.name if count == 1 else f"{spec.name}#{count}")
        terms.append(WeightedTerm(label, float(spec.weight), module, entry.plugin))
    return terms


def _initial_image(init: str | ImageInput, content: torch.Tensor, styles: list[torch.Tensor],
                   generator: torch.Generator, noise_scale: float) -> torch.Tensor:
    if isinstance(init, str) and init == "content":
        return content.clone()
    if isinstance(init, str) and init == "noise":
        noise = torch.rand(content.shape, generator=generator) * 2 - 1
        return (0.5 + noise_scale * noise).clamp(0, 1)
    if isinstance(init, str) and init == "style":
        return resize_to(styles[0], tuple(content.shape[-2:])).expand_as(content).clone()
    return resize_to(load_image(init), tuple(content.shape[-2:])).expand_as(content).clone()


def _blend(style_blend: Sequence[float] | None, count: int) -> list[float]:
    blend = list(style_blend) if style_blend is not None else [1.0] * count
    if len(blend) != count or any(b < 0 for b in blend) or sum(blend) <= 0:
        raise ValueError(f"style_blend needs {count} non-negative weights, got {style_blend}")
    return [b / sum(blend) for b in blend]


def stage_plan(iterations: int, multiscale: Sequence[tuple[float, float]] | None
               ) -> list[tuple[float, int]]:
    """``(scale, steps)`` per stage: ``multiscale`` pairs ``(scale, share of iterations)``.

    Shares are normalised and rounded cumulatively, so the steps add up to ``iterations``.
    """
    if not multiscale:
        return [(1.0, iterations)]
    total = sum(share for _, share in multiscale)
    plan, done, cumulative = [], 0, 0.0
    for scale, share in multiscale:
        cumulative += share
        upto = round(iterations * cumulative / total)
        plan.append((float(scale), upto - done))
        done = upto
    return plan


def _stage_inputs(original: torch.Tensor, style_images: Sequence[torch.Tensor], scale: float,
                  style_scale: float, preserve_colour: str | None
                  ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Content and styles at one stage's size, colour-adjusted as ``preserve_colour`` asks."""
    content = resize_longest(original, max(16, round(max(original.shape[-2:]) * scale)))
    side = round(max(content.shape[-2:]) * style_scale)
    styles = [resize_longest(s, side) for s in style_images]
    if preserve_colour in ("linear", "histogram"):
        match = colour.match_colour_linear if preserve_colour == "linear" \
            else colour.match_colour_histogram
        styles = [match(s, content) for s in styles]
    elif preserve_colour == "luminance":
        pairs = [colour.luminance_only_inputs(content, s) for s in styles]
        content, styles = pairs[0][0], [p[1] for p in pairs]
    return content, styles


def upsample_stage(image: torch.Tensor, content: torch.Tensor, detail: bool) -> torch.Tensor:
    """The previous stage's result ``(B, 3, h, w)`` resized to the content's ``(H, W)``.

    With ``detail``, the content's own fine detail is added back: ``up(x) + c - up(down(c))``,
    the band of the content that the coarse stage could not see (a Laplacian-pyramid level),
    clamped to ``[0, 1]``. The next stage then starts as sharp as the content instead of as
    blurred as the upsampling.
    """
    shape = tuple(content.shape[-2:])
    up = resize_to(image, shape)
    if not detail:
        return up
    blurred = resize_to(resize_to(content, tuple(image.shape[-2:])), shape)
    return (up + content - blurred).clamp(0, 1)


@dataclass
class _Stages:
    """What every stage of one job shares."""

    host: PluginHost
    job: JobInfo
    device: torch.device
    extractor: FeatureExtractor
    extractor_key: Hashable  # the full extractor: the key keeps it alive, so ids never repeat
    layers: list[str]
    terms: list[WeightedTerm]
    cache: StyleCache | None
    precision: str = "fp32"
    detail: bool = True


def _run_stages(run: _Stages, plan: list[tuple[float, int]], original: torch.Tensor,
                style_images: list[torch.Tensor], style_scale: float,
                preserve_colour: str | None, blend: list[float],
                initial: Callable[[torch.Tensor, list[torch.Tensor]], torch.Tensor],
                make_optimizer: Callable[[list[torch.Tensor]], Any],
                ) -> tuple[torch.Tensor, dict[str, list[float]]]:
    """Optimise stage by stage, each started from the previous stage's result, upsampled."""
    history: dict[str, list[float]] = {}
    image: torch.Tensor | None = None
    done = 0
    for scale, steps in plan:
        content, styles = _stage_inputs(original, style_images, scale, style_scale,
                                        preserve_colour)
        fmt = memory_format(run.device)
        content = content.to(run.device, memory_format=fmt)
        styles = [s.to(run.device, memory_format=fmt) for s in styles]
        targets = compute_targets(run.extractor, run.layers, content, styles, blend, run.cache,
                                  run.extractor_key, run.precision)
        for term in run.terms:
            term.module.to(run.device).prepare(targets)
        start = initial(content.cpu(), [s.cpu() for s in styles]) if image is None \
            else upsample_stage(image.detach().cpu(), content.cpu(), run.detail)
        image = start.to(run.device).contiguous(memory_format=fmt).requires_grad_(True)

        def notify(step: int, offset: int = done, **kw: Any) -> None:
            run.host.notify("on_step", job=run.job, step=offset + step, **kw)

        stage = optimise(image, run.terms, run.extractor, run.layers, make_optimizer([image]),
                         steps, notify=notify, precision=run.precision)
        for name, values in stage.items():
            history.setdefault(name, []).extend(values)
        done += steps
    assert image is not None
    return image, history


def stylize(
    content: ImageInput,
    style: ImageInput | Sequence[ImageInput],
    *,
    style_blend: Sequence[float] | None = None,
    size: int | None = 512,
    style_scale: float = 1.0,
    iterations: int = 500,
    seed: int | None = None,
    extractor: str | FeatureExtractor = "vgg19",
    pooling: str = "max",
    weights: str | None = None,
    extractor_options: Mapping[str, Any] | None = None,
    content_layers: Sequence[str] | Mapping[str, float] | None = None,
    style_layers: Sequence[str] | Mapping[str, float] | None = None,
    content_weight: float = 1.0,
    style_weight: float = DEFAULT_STYLE_WEIGHT,
    tv_weight: float = 0.0,
    style_loss: str = "gram",
    losses: Sequence[LossSpec | Mapping[str, Any]] | None = None,
    optimizer: str = "lbfgs",
    optimizer_options: Mapping[str, Any] | None = None,
    init: str | ImageInput = "content",
    noise_scale: float = 0.1,
    preserve_colour: str | None = None,
    multiscale: Sequence[tuple[float, float]] | None = None,
    multiscale_detail: bool = True,
    precision: str = "fp32",
    device: str | torch.device | None = None,
    host: PluginHost | None = None,
    job_name: str = "stylize",
    job_extra: Mapping[str, Any] | None = None,
    cache: StyleCache | None = None,
) -> StyleResult:
    """Stylise ``content`` with ``style`` by optimising the image (Gatys et al. 2016).

    Args:
        content: a path, PIL image or tensor ``(B, 3, H, W)`` / ``(3, H, W)``, RGB in ``[0, 1]``;
            a batch is optimised together (one loss, the mean over the batch).
        style: one style image or a list of them (blended by ``style_blend``).
        size: longest side of the result in pixels (``None`` keeps the content's size).
        style_scale: style images' longest side relative to the result's.
        iterations: optimiser steps.
        seed: seeds the noise initialisation and torch's global generator.
        extractor: a registered extractor name or a built :class:`FeatureExtractor`.
        pooling, weights, extractor_options: extractor options (``weights=None`` is the
            extractor's default).
        content_layers, style_layers, content_weight, style_weight, tv_weight, style_loss:
            the default Gatys terms; ignored when ``losses`` is given.
        losses: explicit loss terms (:class:`LossSpec` or dicts with ``name``, ``weight``,
            ``layers`` and the term's options) replacing the defaults.
        optimizer, optimizer_options: a registered optimiser and its options.
        init: ``"content"``, ``"noise"``, ``"style"`` or an image.
        noise_scale: ``init="noise"`` is mid-grey plus uniform noise in ``±noise_scale``.
        preserve_colour: ``"luminance"`` (luminance-only transfer), ``"linear"`` or
            ``"histogram"`` (match the style's colours to the content first), or ``None``.
        multiscale: ``(scale, share)`` pairs, coarse to fine, ending at scale 1: each stage
            runs ``share`` of the iterations at ``scale`` times ``size`` and initialises the
            next stage with its result, upsampled.
        multiscale_detail: add the content's fine detail to each upsampled result (see
            :func:`upsample_stage`); only with ``init="content"``, so that a run from noise or
            another image never gets the content's edges it did not start from.
        precision: ``"fp32"``, or ``"bf16"``: the extractor runs under bfloat16 autocast, the
            losses and the image stay float32. On CUDA, float32 convolutions and matmuls use
            TF32 and images and weights are ``channels_last`` either way.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``; ``None`` picks CUDA when available.
        host: the plugin host (default: the process-wide one with installed plugins).
        job_name, job_extra: the job's name and details in lifecycle hooks.
        cache: style features shared between calls (see :class:`StyleCache`).

    Returns:
        A :class:`StyleResult` with the image ``(B, 3, H, W)`` on the CPU, RGB in ``[0, 1]``.
    """
    if preserve_colour not in (None, *PRESERVE_COLOUR):
        raise ValueError(f"preserve_colour must be one of {PRESERVE_COLOUR} or None, "
                         f"got {preserve_colour!r}")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    host = host or get_host()
    dev = resolve_device(device)
    styles_in = list(style) if isinstance(style, (list, tuple)) else [style]
    blend = _blend(style_blend, len(styles_in))
    generator = torch.Generator().manual_seed(seed if seed is not None else 0)
    if seed is not None:
        torch.manual_seed(seed)
    original = resize_longest(load_image(content), size)
    style_images = [load_image(s) for s in styles_in]
    specs = [LossSpec.coerce(s) for s in losses] if losses is not None else default_losses(
        content_layers, style_layers, content_weight, style_weight, tv_weight, style_loss)
    ext = extractor if isinstance(extractor, FeatureExtractor) else build_extractor(
        host, extractor, dev, pooling=pooling, weights=weights, **dict(extractor_options or {}))
    terms = build_terms(host, specs)
    layers = feature_layers(terms, ext)
    run_ext = ext.truncated(layers) if layers and hasattr(ext, "truncated") else ext

    plan = stage_plan(iterations, multiscale)
    detail = multiscale_detail and isinstance(init, str) and init == "content"
    job = JobInfo(job_name, iterations, str(dev), tuple(original.shape[-2:]),
                  dict(job_extra or {}))
    start = time.perf_counter()
    host.notify("on_job_start", job=job)
    try:
        with fast_cuda(dev):
            image, history = _run_stages(
                _Stages(host, job, dev, run_ext, ext, layers, terms, cache, precision, detail),
                plan, original,
                style_images, style_scale, preserve_colour, blend,
                lambda content, styles: _initial_image(init, content, styles, generator,
                                                       noise_scale),
                lambda params: host.optimizers.entry(optimizer).factory(
                    params, **dict(optimizer_options or {})))
    except BaseException as exc:
        host.notify("on_job_end", job=job, result=None, error=exc)
        raise
    out = image.detach().contiguous()
    if preserve_colour == "luminance":
        out = colour.recombine_luminance(out, original.to(dev))
    settings = {
        "size": list(out.shape[-2:]), "style_scale": style_scale, "iterations": iterations,
        "seed": seed, "extractor": getattr(ext, "arch", type(ext).__name__),
        "pooling": getattr(ext, "pooling", None), "weights": getattr(ext, "weights", None),
        "losses": [{"name": s.name, "weight": s.weight, "layers": t.module.layers, **s.options}
                   for s, t in zip([s for s in specs if s.weight], terms, strict=True)],
        "optimizer": optimizer, "optimizer_options": dict(optimizer_options or {}),
        "init": init if isinstance(init, str) else "image", "preserve_colour": preserve_colour,
        "style_blend": blend, "stages": [list(stage) for stage in plan],
        "multiscale_detail": detail if len(plan) > 1 else None, "precision": precision,
    }
    result = StyleResult(out.cpu(), history, iterations, time.perf_counter() - start, str(dev),
                         settings)
    host.notify("on_job_end", job=job, result=result, error=None)
    return result
