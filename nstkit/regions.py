"""What each loss term reads in one job: which style images, at what scale, over which region.

:class:`Styling` resolves a config's ``regions``, ``styles`` and the terms' ``style`` and
``style_scale`` once per job (style references to images, the mask to one weight map per
styled region), then gives every stage one :class:`~nstkit.losses.Targets` per term
(:meth:`Styling.stage_targets`): the stage's targets with the term's own style images, at its
own scale, and the regions resized to the stage.

Style references (``losses[i].style``, ``regions`` values): an integer indexes the job's style
images (``stylize``'s ``style``, one per job in ``nstkit run``) followed by the config's
``styles``; ``"style"`` is the job's own style image(s), blended; any other string is the file
name stem of an entry of ``styles`` or an image file (relative to the working folder). In a
region whose value is ``style``, each term reads what it reads unmasked (its own ``style``);
a region naming an image makes every style term read that image there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from nstkit.config import JOB_STYLE, RegionStyle, StylizeConfig
from nstkit.errors import ConfigError, NstkitError
from nstkit.image import ImageInput, load_image
from nstkit.losses import LossTerm, StatisticLoss, Targets
from nstkit.losses.base import Region, fit_guides
from nstkit.losses.guided import GuidedStatistic
from nstkit.masks import decode_mask
from nstkit.optimisation import WeightedTerm

StyleSet = tuple[tuple[int, ...], tuple[float, ...]]
"""Indices into the job's style images and their blend weights (summing to 1)."""
StageStyle = Callable[[int, float], torch.Tensor]
"""``(index, style_scale)`` -> that style image at the stage's size for that scale."""
Features = Callable[[torch.Tensor], Mapping[str, torch.Tensor]]
"""A stage style image -> its features (computed whole, or stitched from tiles)."""


@dataclass
class RegionPlan:
    """One styled region of the job's mask, at the result's size.

    Attributes:
        name: its colour, ``#rrggbb``.
        weight: ``(1, 1, H, W)`` in ``[0, 1]``.
        styles: the images it reads, or ``None``: each term's own.
        style_weights: per image of ``styles``, its style mask ``(1, 1, h, w)`` at the image's
            own size, or ``None``.
    """

    name: str
    weight: torch.Tensor
    styles: StyleSet | None
    style_weights: tuple[torch.Tensor | None, ...] = ()


class Styling:
    """The style images, per-term choices and regions of one job.

    Args:
        config: the job's config.
        job_styles: the job's own style images ``(1, 3, h, w)`` each, RGB in ``[0, 1]``.
        blend: their blend weights (summing to 1).
        mask: the job's colour-coded mask, or ``None`` (unmasked, also with ``regions``).
        photo_size: the content's ``(H, W)`` as loaded (the size a mask is made at).
        result_size: the result's ``(H, W)``.

    Raises:
        MaskError: the mask cannot be used (:func:`nstkit.masks.decode_mask`).
        ConfigError: a style reference names no image the job has.
    """

    def __init__(self, config: StylizeConfig, job_styles: Sequence[torch.Tensor],
                 blend: Sequence[float], mask: ImageInput | None,
                 photo_size: tuple[int, int], result_size: tuple[int, int]) -> None:
        self.config = config
        self.images: list[torch.Tensor] = list(job_styles)
        self.job_count, self.blend = len(job_styles), tuple(blend)
        self._paths: dict[str, int] = {}
        for path in config.styles:
            self._paths[str(Path(path))] = len(self.images)
            self.images.append(load_image(path))
        terms = [spec for spec in config.losses if spec.weight]
        self.term_sets = [self.resolve(spec.style, f"losses: {spec.name}.style")
                          if spec.style is not None else None for spec in terms]
        self.term_scales = [spec.style_scale for spec in terms]
        self.warnings: list[str] = []
        self.regions: list[RegionPlan] | None = None
        if config.regions is not None and mask is not None:
            self.regions = self._regions(mask, photo_size, result_size)

    @property
    def active(self) -> bool:
        """Whether any term reads anything but the job's styles at the config's scale."""
        return self.regions is not None or any(s is not None for s in self.term_sets) \
            or any(s is not None for s in self.term_scales)

    def resolve(self, ref: int | str, where: str) -> StyleSet:
        """A style reference (see the module's docstring) as a :data:`StyleSet`."""
        if ref == JOB_STYLE:
            return tuple(range(self.job_count)), self.blend
        if isinstance(ref, int):
            if ref >= len(self.images):
                raise ConfigError([f"{where}: style {ref}, but the job has {len(self.images)} "
                                   f"style image(s) (0 to {len(self.images) - 1}: its "
                                   f"{self.job_count} own, then styles)"])
            return (ref,), (1.0,)
        stems = {Path(path).stem: self._paths[str(Path(path))] for path in self.config.styles}
        if ref in stems:
            return (stems[ref],), (1.0,)
        key = str(Path(ref))
        if key not in self._paths:
            self._paths[key] = len(self.images)
            self.images.append(load_image(ref))
        return (self._paths[key],), (1.0,)

    def _regions(self, mask: ImageInput, photo_size: tuple[int, int],
                 result_size: tuple[int, int]) -> list[RegionPlan]:
        regions = self.config.regions or {}
        colours = list(regions)
        maps, self.warnings = decode_mask(mask, colours, photo_size)
        fitted = fit_guides({"mask": maps}, torch.empty(len(colours), 3, *result_size))["mask"]
        plans = []
        for index, (colour, value) in enumerate(regions.items()):
            if value is None or not maps[index].any():
                continue  # keeps the content, or absent from this photo
            ref = value.style if isinstance(value, RegionStyle) else value
            styles = None if ref == JOB_STYLE else self.resolve(ref, f"regions: {colour}")
            weights: tuple[torch.Tensor | None, ...] = ()
            if isinstance(value, RegionStyle) and styles is not None:
                image = self.images[styles[0][0]]
                style_maps, _ = decode_mask(value.mask, colours, tuple(image.shape[-2:]))
                if not style_maps[index].any():
                    raise NstkitError(f"regions: {colour}: the style mask {value.mask!r} has no "
                                      f"pixel of {colour}")
                weights = (style_maps[index:index + 1],)
            plans.append(RegionPlan(colour, fitted[index:index + 1].clamp(0, 1), styles,
                                    weights))
        return plans

    def stage_targets(self, base: Targets, stage_style: StageStyle, features: Features
                      ) -> list[Targets]:
        """One :class:`Targets` per term for a stage whose job-wide targets are ``base``.

        A term reading the job's styles at the config's scale, unmasked, gets ``base``
        itself; the others get ``base`` with their own style images and features (each
        computed once per stage) and the regions at the stage's size.
        """
        default = self.config.style_scale
        done: dict[tuple[int, float], tuple[torch.Tensor, Mapping[str, torch.Tensor]]] = {
            (index, default): (image, feats) for index, (image, feats) in
            enumerate(zip(base.style_images, base.style_features, strict=True))}

        def style(index: int, scale: float) -> tuple[torch.Tensor, Mapping[str, torch.Tensor]]:
            if (index, scale) not in done:
                image = stage_style(index, scale)
                done[(index, scale)] = image, features(image)
            return done[(index, scale)]

        weights = {plan.name: fit_guides({"w": plan.weight}, base.content_image)["w"]
                   for plan in self.regions or []}
        out = []
        for chosen, own_scale in zip(self.term_sets, self.term_scales, strict=True):
            scale = own_scale if own_scale is not None else default
            if chosen is None and scale == default and self.regions is None:
                out.append(base)
                continue
            own = chosen or (tuple(range(self.job_count)), self.blend)
            images = [style(index, scale) for index in own[0]]
            regions = None
            if self.regions is not None:
                regions = []
                for plan in self.regions:
                    reads = plan.styles or own
                    parts = [style(index, scale) for index in reads[0]]
                    style_weights = [None if not plan.style_weights else
                                     _fit(plan.style_weights[0], tuple(image.shape[-2:]))
                                     for image, _ in parts]
                    regions.append(Region(plan.name, weights[plan.name], [p[0] for p in parts],
                                          [p[1] for p in parts], list(reads[1]),
                                          style_weights))
            out.append(dataclasses.replace(
                base, style_images=[i for i, _ in images], style_features=[f for _, f in images],
                style_blend=list(own[1]), regions=regions))
        return out


def _fit(weight: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return fit_guides({"w": weight}, torch.empty(1, 3, *size))["w"].clamp(0, 1)


def guide_terms(terms: list[WeightedTerm]) -> None:
    """Make every term of a masked job follow the regions: a :class:`StatisticLoss` that
    supports masks is wrapped in :class:`GuidedStatistic` (in place); one that handles masks
    itself is left as it is, and so are terms that do not read the style.

    Raises:
        ConfigError: a term reads the style (or does not say) and does not support masks.
    """
    problems = []
    for term in terms:
        module = term.module
        if isinstance(module, GuidedStatistic) or module.reads_style is False:
            continue
        supports = getattr(type(module), "supports_masks", None)
        if supports and isinstance(module, StatisticLoss):
            term.module = GuidedStatistic(module)
        elif not supports or not isinstance(module, LossTerm):
            origin = f" (plugin {term.plugin!r})" if term.plugin else ""
            problems.append(f"loss {term.name!r}{origin} ({type(module).__name__}) does not "
                            f"support region masks; use gram, wasserstein or mean_std in a "
                            f"masked recipe, or run this photo without a mask")
    if problems:
        raise ConfigError(problems)
