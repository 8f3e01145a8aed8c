"""A job's memory plan: whole or tiled, which tile, which L-BFGS history; checked before work.

:func:`plan_memory` prices the full-size stage with :func:`nstkit.memory.estimate_memory`:
whole, or per tile (one window's activations, and on the CPU the heap's larger share of them,
:data:`nstkit.memory.CPU_TILED_HEAP_SHARE`) plus what stays image-sized in a tiled stage (the
image, its gradient and the optimiser's state, the content and style images, the content
features that positional terms compare against). ``tiling: auto`` picks the largest tile
(with an overlap of an eighth of it) that fits the memory available, and, when even the
smallest does not fit because of L-BFGS's history (``2 * history_size`` image-sized vectors),
a shorter history, or says to use Adam.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nstkit.config import StylizeConfig, TilingConfig
from nstkit.errors import NstkitError
from nstkit.memory import (
    CPU_TILED_HEAP_SHARE,
    MemoryEstimate,
    estimate_memory,
    format_bytes,
    meta_copy,
    module_outputs,
    optimizer_state_images,
)

AUTO_TILES = (2048, 1536, 1024, 768, 512, 384, 256)
MIN_HISTORY = 5
HEADROOM = 0.85  # auto plans to use at most this share of the memory available


class MemoryPlanError(NstkitError, MemoryError):
    """A job needs more memory than the device has; raised before any work."""


@dataclass(frozen=True)
class MemoryPlan:
    """The plan of the full-size stage.

    Attributes:
        estimate: the job's peak (tiled: one window's activations plus image-sized state).
        needed: what the job still needs when it starts (the peak less the weights and the
            runtime, which are loaded by then); compared with ``available``.
        available: bytes free on the device (``None``: not known, not checked).
        tiling: the tiling that runs (``auto`` resolved; ``None``: whole image).
        tiles: tiles per step at full size (1 when whole).
        window: one window's estimate (``None`` when whole).
        history_size: the L-BFGS history ``auto`` chose (``None``: as configured).
    """

    estimate: MemoryEstimate
    needed: int
    available: int | None
    tiling: TilingConfig | None = None
    tiles: int = 1
    window: MemoryEstimate | None = None
    history_size: int | None = None

    @property
    def fits(self) -> bool:
        return self.available is None or self.needed <= self.available

    def describe(self) -> str:
        """One line for ``--dry-run`` and errors."""
        free = "" if self.available is None else \
            f" of {format_bytes(self.available)} available"
        if self.tiling is None:
            return f"whole image: {self.estimate}; needs {format_bytes(self.needed)}{free}"
        assert self.window is not None
        history = "" if self.history_size is None else \
            f"; L-BFGS history_size {self.history_size} to fit"
        return (f"tiled: {self.tiles} tiles of {self.tiling.tile} px (overlap "
                f"{self.tiling.overlap} px, style {self.tiling.style}) per step, "
                f"{format_bytes(self.window.activations)} activations per tile; "
                f"{self.estimate}; needs {format_bytes(self.needed)}{free}{history}")

    @property
    def advice(self) -> str:
        """What to change when the plan does not fit."""
        if self.tiling is None:
            return ("set `tiling: auto` (--set tiling=auto) to stylise it in tiles, or use a "
                    "smaller --size, or `precision: bf16`")
        return ("use a smaller tile, `tiling: auto`, `optimizer: {name: adam}` (L-BFGS keeps "
                "2 * history_size image-sized vectors) or a smaller --size")

    def check(self, what: str = "this job") -> None:
        """Raise :class:`MemoryPlanError`, saying what to change, if the plan does not fit."""
        if self.fits:
            return
        assert self.available is not None
        raise MemoryPlanError(
            f"{what} needs about {format_bytes(self.needed)} but only "
            f"{format_bytes(self.available)} is available ({self.describe()}); {self.advice}")


def _needed(estimate: MemoryEstimate) -> int:
    return estimate.total - estimate.weights - getattr(estimate, "runtime", 0)


def _image_bytes(height: int, width: int, batch: int) -> int:
    return 3 * height * width * 4 * batch


def _tiled_estimate(extractor: Any, layers: Sequence[str], positional_layers: Sequence[str],
                    config: StylizeConfig, tiling: TilingConfig, height: int, width: int,
                    batch: int, history: int | None) -> tuple[MemoryEstimate, MemoryEstimate]:
    """The tiled stage's peak and one window's estimate."""
    side = tiling.tile
    options = dict(config.optimizer.options)
    if history is not None:
        options["history_size"] = history
    window = estimate_memory(extractor, layers, min(side, height), min(side, width),
                             batch=batch, styles=0, precision=config.precision,
                             optimizer=config.optimizer.name, optimizer_options=options,
                             average=config.ema is not None, heap_share=CPU_TILED_HEAP_SHARE)
    image = _image_bytes(height, width, batch)
    style_side = max(height, width) * config.style_scale
    style_image = 3 * 4 * round(style_side * style_side * min(height, width) / max(height, width))
    stitched = 0
    if positional_layers:
        probe = meta_copy(extractor.truncated(list(positional_layers))
                          if hasattr(extractor, "truncated") else extractor)
        stitched = module_outputs(probe, positional_layers, height, width)[1] * batch
    whole = dataclasses.replace(
        window, targets=stitched + 2 * image + style_image,  # content, original, style
        optimizer=image * (optimizer_state_images(config.optimizer.name, options)
                           + (config.ema is not None) + 1),  # + image.grad, filled per tile
        height=height, width=width)
    return whole, window


def _count_tiles(extractor: Any, layers: Sequence[str], tiling: TilingConfig, height: int,
                 width: int) -> int:
    from nstkit.tiling.grid import TileGrid, layer_strides

    align = max(layer_strides(extractor, list(layers)).values(), default=1)
    return len(TileGrid(height, width, tiling.tile, tiling.overlap, align))


def plan_memory(config: StylizeConfig, extractor: Any, layers: Sequence[str],
                positional_layers: Sequence[str], height: int, width: int, batch: int = 1,
                available: int | None = None) -> MemoryPlan:
    """Plan the full-size stage of ``config`` for ``batch`` images of ``height x width``.

    Args:
        extractor: the extractor (traced on ``meta``; its weights are not used).
        layers: every layer the losses read.
        positional_layers: layers whose whole-image content features a tiled stage keeps
            (those of terms other than :class:`~nstkit.losses.StatisticLoss`).
        available: bytes free on the device; ``None`` skips the checks and ``auto`` tiles
            only when the image is larger than the largest auto tile.
    """
    tiling = config.tiling
    whole = estimate_memory(extractor, layers, height, width, batch=batch,
                            style_scale=config.style_scale, precision=config.precision,
                            optimizer=config.optimizer.name,
                            optimizer_options=config.optimizer.options,
                            average=config.ema is not None)
    if tiling is None or (isinstance(tiling, TilingConfig) and max(height, width) <= tiling.tile):
        return MemoryPlan(whole, _needed(whole), available)
    if isinstance(tiling, TilingConfig):
        return _tiled_plan(config, extractor, layers, positional_layers, tiling, height, width,
                           batch, available, None)
    plan = MemoryPlan(whole, _needed(whole), available)
    if available is None or plan.needed <= available * HEADROOM:
        return plan
    return _auto_plan(config, extractor, layers, positional_layers, height, width, batch,
                      plan, int(available * HEADROOM))


def _tiled_plan(config: StylizeConfig, extractor: Any, layers: Sequence[str],
                positional_layers: Sequence[str], tiling: TilingConfig, height: int,
                width: int, batch: int, available: int | None,
                history: int | None) -> MemoryPlan:
    estimate, window = _tiled_estimate(extractor, layers, positional_layers, config, tiling,
                                       height, width, batch, history)
    return MemoryPlan(estimate, _needed(estimate), available, tiling,
                      _count_tiles(extractor, layers, tiling, height, width), window, history)


def _auto_plan(config: StylizeConfig, extractor: Any, layers: Sequence[str],
               positional_layers: Sequence[str], height: int, width: int, batch: int,
               whole: MemoryPlan, budget: int) -> MemoryPlan:
    """The largest auto tile that fits ``budget``; failing that, with a shorter L-BFGS history;
    failing that, the smallest tile (which :meth:`MemoryPlan.check` refuses)."""
    candidates = [TilingConfig(tile=side, overlap=side // 8) for side in AUTO_TILES
                  if side < max(height, width)]
    if not candidates:
        return whole

    def plans(history: int | None) -> list[MemoryPlan]:
        return [_tiled_plan(config, extractor, layers, positional_layers, tiling, height,
                            width, batch, whole.available, history) for tiling in candidates]

    tried = plans(None)
    fitting = next((plan for plan in tried if plan.needed <= budget), None)
    if fitting is not None:
        return fitting
    history = _shorter_history(config, tried[-1], height, width, batch, budget)
    if history is None:
        return tried[-1]
    tried = plans(history)
    return next((plan for plan in tried if plan.needed <= budget), tried[-1])


def _shorter_history(config: StylizeConfig, plan: MemoryPlan, height: int, width: int,
                     batch: int, budget: int) -> int | None:
    """The longest L-BFGS history (at least :data:`MIN_HISTORY`) with which ``plan`` fits."""
    if config.optimizer.name != "lbfgs":
        return None
    configured = int(config.optimizer.options.get("history_size", 100))
    image = _image_bytes(height, width, batch)
    rest = plan.needed - 2 * configured * image
    history = min(configured - 1, (budget - rest) // (2 * image))
    return history if history >= MIN_HISTORY else None


def resolved(config: StylizeConfig, plan: MemoryPlan) -> StylizeConfig:
    """``config`` as the plan runs it: ``auto`` replaced by the chosen tiling (or ``None``),
    and the L-BFGS history the plan shortened."""
    changes: dict[str, Any] = {}
    if config.tiling == "auto":
        changes["tiling"] = plan.tiling
    if plan.history_size is not None:
        changes["optimizer"] = config.optimizer.model_copy(
            update={"history_size": plan.history_size})
    return config.model_copy(update=changes) if changes else config


def plan_for_recipe(config: StylizeConfig, height: int, width: int, batch: int = 1,
                    available: int | None = None, host: Any = None) -> MemoryPlan:
    """:func:`plan_memory` for a configuration, with its extractor built with random weights
    (cheap) and its terms built to find their layers."""
    from nstkit.components import build_terms
    from nstkit.losses import StatisticLoss
    from nstkit.optimisation import feature_layers
    from nstkit.plugins import get_host

    host = host or get_host()
    factory = host.extractors.get(config.extractor.name)
    try:
        extractor = factory(**{**config.extractor.options, "weights": "random"})
    except TypeError:  # an extractor without a weights option
        extractor = factory(**config.extractor.options)
    terms = build_terms(host, config.losses, config.strength)
    layers = feature_layers(terms, extractor)
    positional = [layer for term in terms if not isinstance(term.module, StatisticLoss)
                  for layer in term.module.layers]
    return plan_memory(config, extractor, layers, positional, height, width, batch, available)
