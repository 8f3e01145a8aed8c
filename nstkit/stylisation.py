"""The Python API: :func:`stylize` an image as a :class:`nstkit.config.StylizeConfig` says."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nstkit import colour
from nstkit.components import (
    build_extractor,
    build_terms,
    fast_cuda,
    memory_format,
    resolve_device,
)
from nstkit.config import ExtractorConfig, LossTermConfig, StylizeConfig, TilingConfig
from nstkit.config_overrides import GATYS_KEYS, apply_overrides
from nstkit.errors import ConfigError, NstkitError
from nstkit.extractors import FeatureExtractor
from nstkit.image import ImageInput, load_image, resize_longest, resize_to
from nstkit.job import JobInfo
from nstkit.losses import StatisticLoss, Targets
from nstkit.memory import available_memory
from nstkit.memory_plan import plan_memory, resolved
from nstkit.optim import carry_state
from nstkit.optimisation import (
    StyleCache,
    WeightedTerm,
    compute_targets,
    feature_layers,
    optimise,
    style_features,
)
from nstkit.plugins import PluginHost, get_host
from nstkit.recipe import RECOMMENDED, load_recipe
from nstkit.regions import Styling, guide_terms
from nstkit.result import StyleResult
from nstkit.tiling.evaluate import TiledImage
from nstkit.tiling.stage import needs_tiles, tiled_stage

LossSpec = LossTermConfig  # the name this API used before the typed configuration


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
    """``(scale, steps)`` per stage: ``multiscale`` pairs ``(scale, share of iterations)``
    (:meth:`nstkit.config.MultiscaleConfig.stages`).

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
class _Job:
    """What every stage of one stylisation shares."""

    host: PluginHost
    info: JobInfo
    config: StylizeConfig
    device: torch.device
    extractor: FeatureExtractor
    extractor_key: Hashable  # the full extractor: the key keeps it alive, so ids never repeat
    layers: list[str]
    terms: list[WeightedTerm]
    cache: StyleCache | None
    blend: list[float]
    detail: bool
    tiling: TilingConfig | None = None
    tile_generator: torch.Generator | None = None
    guides: Mapping[str, torch.Tensor] | None = None
    styling: Styling | None = None


@dataclass
class _Stage:
    """One stage, prepared: its content ``(B, 3, h, w)`` on the device, its targets, and
    how its loss is evaluated (``None``: the whole image at once)."""

    content: torch.Tensor
    targets: Targets
    evaluate: TiledImage | None = None


def _prepare_stage(job: _Job, original: torch.Tensor, style_images: list[torch.Tensor],
                   scale: float) -> _Stage:
    """One stage's content and targets, with every term prepared for them."""
    content, styles = _stage_inputs(original, style_images, scale, job.config.style_scale,
                                    job.config.preserve_colour)
    fmt = memory_format(job.device)
    content = content.to(job.device, memory_format=fmt)
    styles = [s.to(job.device, memory_format=fmt) for s in styles]
    views = None
    if job.styling is not None and job.styling.active:
        styling = job.styling

        def stage_style(index: int, style_scale: float) -> torch.Tensor:
            _, (image,) = _stage_inputs(original, [styling.images[index]], scale, style_scale,
                                        job.config.preserve_colour)
            return image.to(job.device, memory_format=fmt)

        def views(base: Targets, features: Callable[[torch.Tensor], Mapping[str, torch.Tensor]]
                  ) -> list[Targets]:
            return styling.stage_targets(base, stage_style, features)
    if needs_tiles(job.tiling, content.shape):
        assert job.tiling is not None
        targets, evaluate = tiled_stage(job.terms, job.extractor, job.layers, content, styles,
                                        job.blend, job.tiling, job.config.precision,
                                        job.tile_generator, fmt, job.guides, views)
        return _Stage(content, targets, evaluate)
    targets = compute_targets(job.extractor, job.layers, content, styles, job.blend,
                              job.cache, job.extractor_key, job.config.precision, job.guides)
    per_term = [targets] * len(job.terms) if views is None else views(
        targets, lambda image: style_features(job.extractor, job.layers, image, job.cache,
                                              job.extractor_key, job.config.precision))
    for term, own in zip(job.terms, per_term, strict=True):
        term.module.to(job.device).prepare(own)
    return _Stage(content, targets)


def _fitting_stages(job: _Job, plan: list[tuple[float, int]], original: torch.Tensor,
                    style_images: list[torch.Tensor]) -> tuple[list[tuple[float, int]], _Stage]:
    """The plan from its first stage large enough for the deepest layer (the skipped stages'
    steps move to it), with that stage prepared."""
    for index, (scale, _) in enumerate(plan):
        try:
            prepared = _prepare_stage(job, original, style_images, scale)
        except ValueError as exc:
            if "too small" not in str(exc) or index == len(plan) - 1:
                raise
            continue
        skipped = sum(steps for _, steps in plan[:index])
        stages = [(scale, plan[index][1] + skipped), *plan[index + 1:]]
        return stages, prepared
    raise AssertionError("unreachable: the last stage raises")


def _run_stages(job: _Job, plan: list[tuple[float, int]], original: torch.Tensor,
                style_images: list[torch.Tensor],
                initial: Callable[[torch.Tensor, list[torch.Tensor]], torch.Tensor],
                make_optimizer: Callable[[list[torch.Tensor]], Any],
                ) -> tuple[torch.Tensor, dict[str, list[float]], list[tuple[float, int]]]:
    """Optimise stage by stage, each started from the previous stage's result, upsampled
    (with ``ema``, the previous stage's average); with ``multiscale.carry_state`` each
    stage's optimiser starts from the previous one's state, resized."""
    history: dict[str, list[float]] = {}
    image: torch.Tensor | None = None
    stages, prepared = _fitting_stages(job, plan, original, style_images)
    done = 0
    carry = job.config.multiscale is not None and job.config.multiscale.carry_state
    previous: Any = None  # the last stage's optimiser
    for number, (scale, steps) in enumerate(stages):
        stage = prepared if number == 0 else _prepare_stage(job, original, style_images, scale)
        content = stage.content
        start = initial(content.cpu(), [s.cpu() for s in stage.targets.style_images]) \
            if image is None else upsample_stage(image.detach().cpu(), content.cpu(), job.detail)
        fmt = memory_format(job.device)
        image = start.to(job.device).contiguous(memory_format=fmt).requires_grad_(True)

        def notify(step: int, offset: int = done, **kw: Any) -> None:
            job.host.notify("on_step", job=job.info, step=offset + step, **kw)

        optimizer = make_optimizer([image])
        if carry and previous is not None:
            carry_state(previous, optimizer)
        previous = optimizer  # the last stage's state is freed as this one runs
        result = optimise(image, job.terms, job.extractor, job.layers, optimizer, steps,
                          notify=notify, precision=job.config.precision,
                          evaluate=stage.evaluate, ema=job.config.ema)
        for name, values in result.items():
            history.setdefault(name, []).extend(values)
        done += steps
    assert image is not None
    return image, history, stages


def _base_config(config: StylizeConfig | None, overrides: Mapping[str, Any],
                 host: PluginHost) -> StylizeConfig:
    """The config the overrides apply to: ``config``, else the recommended recipe's, else
    Gatys's when the overrides name loss terms (they are written against its terms)."""
    if config is not None:
        return config
    if any(overrides.get(key) is not None for key in ("losses", *GATYS_KEYS)):
        return StylizeConfig()
    return load_recipe(RECOMMENDED, host=host).config


def stylize(content: ImageInput, style: ImageInput | Sequence[ImageInput],
            config: StylizeConfig | None = None, *,
            style_blend: Sequence[float] | None = None,
            device: str | torch.device | None = None, host: PluginHost | None = None,
            job_name: str = "stylize", job_extra: Mapping[str, Any] | None = None,
            cache: StyleCache | None = None,
            guides: Mapping[str, torch.Tensor] | None = None,
            mask: ImageInput | None = None, **overrides: Any) -> StyleResult:
    """Stylise ``content`` with ``style`` by optimising the image (Gatys et al. 2016's method).

    Args:
        content: a path, PIL image or tensor ``(B, 3, H, W)`` / ``(3, H, W)``, RGB in ``[0, 1]``;
            a batch is optimised together (one loss, the mean over the batch).
        style: one style image or a list of them (blended by ``style_blend``).
        config: what to do (a recipe's ``config``). Without one: the recommended recipe
            (:data:`nstkit.recipe.RECOMMENDED`), or :class:`StylizeConfig` (Gatys et al.'s
            terms) when ``losses`` or a Gatys shorthand (``style_weight``, ...) is given.
        style_blend: one weight per style image (normalised).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``; ``None`` picks CUDA when available.
        host: the plugin host (default: the process-wide one with installed plugins).
        job_name, job_extra: the job's name and details in lifecycle hooks.
        cache: style features shared between calls (see :class:`StyleCache`).
        guides: per-job images for the loss terms, by name, each ``(1 or B, C, H, W)``
            (:attr:`nstkit.losses.Targets.guides`: resized to every stage's size, cropped per
            tile); a term reads them in ``prepare``. Nothing in nstkit reads them itself.
        mask: a colour-coded region mask of ``content`` (a path, PIL image or tensor
            ``(1, 3, H, W)``; :mod:`nstkit.masks`) for the config's ``regions``: each style
            term matches each region's statistics to that region's style (Gatys et al. 2017);
            ignored without ``regions``, and ``regions`` without a mask runs unmasked.
        **overrides: config keys (``size=256``, ``seed=1``, ``losses=[...]``) and the keyword
            API's shorthands (``iterations``, ``style_weight``, ``optimizer="adam"``,
            ``pooling``, ...; see :func:`nstkit.config_overrides.apply_overrides`).
            ``extractor`` may be a built :class:`FeatureExtractor` and ``init`` an image.

    Returns:
        A :class:`StyleResult` with the image ``(B, 3, H, W)`` on the CPU, RGB in ``[0, 1]``.

    Raises:
        ConfigError: the configuration with ``overrides`` is invalid (every problem listed).
    """
    host = host or get_host()
    built = overrides.pop("extractor", None) if isinstance(overrides.get("extractor"),
                                                           FeatureExtractor) else None
    init = overrides.pop("init") if not isinstance(overrides.get("init", ""), str) else None
    config = apply_overrides(_base_config(config, overrides, host), overrides, host,
                             check_layers=built is None)  # a built extractor has its own
    dev = resolve_device(device)
    styles_in = list(style) if isinstance(style, (list, tuple)) else [style]
    blend = _blend(style_blend, len(styles_in))
    generator = torch.Generator().manual_seed(config.seed if config.seed is not None else 0)
    if config.seed is not None:
        torch.manual_seed(config.seed)
    photo = load_image(content)
    original = resize_longest(photo, config.size)
    plan = stage_plan(config.iterations, _shares(config, original, content))
    style_images = [load_image(s) for s in styles_in]
    styling = Styling(config, style_images, blend, mask, tuple(photo.shape[-2:]),
                      tuple(original.shape[-2:]))
    del photo
    ext = built or build_extractor(host, config.extractor.name, dev, **config.extractor.options)
    terms = build_terms(host, config.losses, config.strength)
    if styling.regions is not None:
        guide_terms(terms)
    layers = feature_layers(terms, ext)
    run_ext = ext.truncated(layers) if layers and hasattr(ext, "truncated") else ext
    detail = bool(config.multiscale and config.multiscale.detail) and init is None \
        and config.init == "content"
    info = JobInfo(job_name, config.iterations, str(dev), tuple(original.shape[-2:]),
                   dict(job_extra or {}), tuple(plan))
    config = _planned(config, run_ext, layers, terms, original, dev, content)
    tiling = config.tiling if isinstance(config.tiling, TilingConfig) else None
    job = _Job(host, info, config, dev, run_ext, ext, layers, terms, cache, blend, detail,
               tiling, torch.Generator().manual_seed(generator.initial_seed() + 1), guides,
               styling)
    start = time.perf_counter()
    host.notify("on_job_start", job=info)
    try:
        with fast_cuda(dev):
            image, history, stages = _run_stages(
                job, plan, original, style_images,
                lambda c, s: _initial_image(init if init is not None else config.init, c, s,
                                            generator, config.noise_scale),
                lambda params: host.optimizers.get(config.optimizer.name)(
                    params, **config.optimizer.options))
    except ValueError as exc:
        error = _too_small(exc, content, config) if "too small" in str(exc) else exc
        host.notify("on_job_end", job=info, result=None, error=error)
        raise error from None
    except BaseException as exc:
        host.notify("on_job_end", job=info, result=None, error=exc)
        raise
    out = image.detach().contiguous()
    if config.preserve_colour == "luminance":
        out = colour.recombine_luminance(out, original.to(dev))
    result = StyleResult(out.cpu(), history, config.iterations, time.perf_counter() - start,
                         str(dev), _as_run(config, built, init),
                         [[scale, steps] for scale, steps in stages], blend,
                         detail and len(stages) > 1)
    host.notify("on_job_end", job=info, result=result, error=None)
    return result


def _shares(config: StylizeConfig, original: torch.Tensor, content: ImageInput
            ) -> list[tuple[float, float]] | None:
    """``multiscale``'s ``(scale, share)`` pairs for this result size (a ladder's rungs
    depend on it), or ``None`` without ``multiscale``."""
    if config.multiscale is None:
        return None
    try:
        return config.multiscale.stages(max(original.shape[-2:]))
    except ValueError as exc:
        h, w = original.shape[-2:]
        raise ConfigError([f"stylize(): multiscale: {exc} (for {_name(content)}a {h}x{w} px "
                           f"result)"]) from None


def _planned(config: StylizeConfig, extractor: FeatureExtractor, layers: list[str],
             terms: list[WeightedTerm], original: torch.Tensor, device: torch.device,
             content: ImageInput) -> StylizeConfig:
    """Check the full-size stage fits the device's free memory (raising
    :class:`MemoryPlanError` before any work if not) and resolve ``tiling: auto``."""
    positional = [layer for term in terms if not isinstance(term.module, StatisticLoss)
                  for layer in term.module.layers]
    try:
        plan = plan_memory(config, extractor, layers, positional, *original.shape[-2:],
                           batch=original.shape[0], available=available_memory(device))
    except (RuntimeError, NotImplementedError, TypeError, ValueError) as exc:
        if config.tiling == "auto":  # an extractor that cannot be traced on `meta`
            raise NstkitError(f"tiling: auto cannot plan this extractor's memory ({exc}); "
                              f"give tiling.tile instead") from exc
        return config
    plan.check(f"{_name(content)}a {original.shape[-2]}x{original.shape[-1]} px result")
    return resolved(config, plan)


def _name(content: ImageInput) -> str:
    """``"path: "`` for an input given by path, else ``""``."""
    return f"{content}: " if isinstance(content, (str, bytes)) or hasattr(content, "__fspath__") \
        else ""


def _as_run(config: StylizeConfig, built: FeatureExtractor | None,
            init: ImageInput | None) -> StylizeConfig:
    """The config as it ran: a built extractor by its class name, an image ``init`` as
    ``"image"`` (neither is a config value one could pass again)."""
    changes: dict[str, Any] = {}
    if built is not None:
        changes["extractor"] = ExtractorConfig(name=type(built).__name__)
    if init is not None:
        changes["init"] = "image"
    return config.model_copy(update=changes) if changes else config


def _too_small(error: ValueError, content: ImageInput, config: StylizeConfig) -> ValueError:
    """The error for a result size too small for the deepest layer, naming the input file."""
    return ValueError(f"{_name(content)}{error} (asked for size {config.size})")
