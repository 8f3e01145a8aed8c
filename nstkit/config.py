"""The typed configuration of one stylisation: the only source of its defaults, choices and
checks.

:class:`StylizeConfig` is what :func:`nstkit.stylize` runs; :class:`RecipeConfig` adds a
recipe's ``version``, ``name`` and ``description``. Loss terms, the optimiser and the extractor
are open-ended here (any registered name, any options); :mod:`nstkit.config_schema` narrows
them to the components a plugin host has registered, each with its own options model.

Imports pydantic and nothing heavy (no torch): ``nstkit validate`` runs on this.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from nstkit.layers import GATYS_STYLE_LAYERS

VERSION = 1
INIT_CHOICES = ("content", "noise", "style")
WEIGHT_KEYWORDS = ("original", "torchvision", "random")
MAX_NUMBER = 1e30
MAX_RATIO = 1e3
MAX_STAGES = 32
SQRT2 = math.sqrt(2)
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"

Precision = Literal["fp32", "bf16"]
PreserveColour = Literal["luminance", "linear", "histogram"]
ImageFormat = Literal["png", "jpg", "webp", "tiff"]
Pooling = Literal["max", "avg"]


def _bounded(value: float) -> float:
    if abs(value) > MAX_NUMBER:
        raise ValueError(f"is out of range (|x| > {MAX_NUMBER:g}), got {str(value)[:20]}")
    return value


# numbers as YAML writes them: a string such as "1e-3" or a bool is not a number here
Number = Annotated[float, Field(strict=True, allow_inf_nan=False), AfterValidator(_bounded)]
NonNegative = Annotated[Number, Field(ge=0)]
Positive = Annotated[Number, Field(gt=0)]
Integer = Annotated[int, Field(strict=True), AfterValidator(_bounded)]
Count = Annotated[Integer, Field(ge=0)]


def _string_keys(data: Any) -> Any:
    if isinstance(data, dict):
        odd = [key for key in data if not isinstance(key, str)]
        if odd:
            raise ValueError(f"keys must be strings, got {odd[0]!r}")
    return data


def _version(value: Any) -> Any:
    if type(value) is not int or value != VERSION:
        shown = "true" if value is True else "false" if value is False else repr(value)
        raise ValueError(f"unsupported version {shown}; this nstkit reads version {VERSION}")
    return value


class _Mapping(BaseModel):
    """A mapping whose keys are strings (YAML allows others)."""

    @model_validator(mode="before")
    @classmethod
    def _keys_are_strings(cls, data: Any) -> Any:
        return _string_keys(data)


class Section(_Mapping):
    """A mapping of known keys: any other key is a mistake."""

    model_config = ConfigDict(extra="forbid", validate_default=False)


class Options(Section):
    """Base class of a component's options model (for :meth:`Registry.register`'s
    ``options=``): each field is one option, with its type, default and limits."""


# --- layers ------------------------------------------------------------------------------------
class LayerSchedule(Section):
    """Layer weights changing by ``ratio`` per layer (``geometric``) or ``1 / N`` (``equal``)."""

    schedule: Literal["equal", "geometric"]
    layers: Annotated[list[str], Field(min_length=1)]
    ratio: Annotated[Positive, Field(le=MAX_RATIO)] = 2.0
    rising: Annotated[bool, Field(strict=True)] = False


def _layer_form(value: Any) -> str | None:
    """The form of a ``layers`` value, as read from YAML or as validated (for dumping)."""
    if isinstance(value, LayerSchedule):
        return "schedule"
    if isinstance(value, dict):
        return "schedule" if "schedule" in value else "weights"
    return "names" if isinstance(value, list) else None


LayerSpec = Annotated[
    Annotated[Annotated[list[str], Field(min_length=1)], Tag("names")]
    | Annotated[Annotated[dict[str, NonNegative], Field(min_length=1)], Tag("weights")]
    | Annotated[LayerSchedule, Tag("schedule")],
    Discriminator(_layer_form, custom_error_type="layers",
                  custom_error_message="must be a list of layer names, a mapping of layer name "
                                       "to weight, or a schedule"),
]


def _no_layers(value: Any) -> None:
    if value:
        raise ValueError("this term reads the image, not extractor layers; remove 'layers'")


NoLayers = Annotated[None, BeforeValidator(_no_layers)]


class ImageTermOptions(Options):
    """Options base of a term computed on the image itself (no extractor layers)."""

    layers: NoLayers = None


# --- styles and regions ------------------------------------------------------------------------
JOB_STYLE = "style"
"""The style reference that means the job's own style image(s) (``--style``, ``stylize``'s
``style``), blended by ``style_blend``."""

StyleRef = Annotated[
    Annotated[Integer, Field(ge=0)] | Annotated[str, Field(min_length=1)],
    Field(description="which style image: an index into the job's style images followed by "
                      "`styles`, `style` (the job's own, blended), the file name stem of an "
                      "entry of `styles`, or an image file (relative to the working folder)"),
]
COMMON_TERM_KEYS = {"name", "weight", "layers", "label", "style", "style_scale"}


def _check_colour(value: str) -> str:
    from nstkit.masks import parse_colour

    parse_colour(value)
    return value.lower()


Colour = Annotated[str, AfterValidator(_check_colour)]


class RegionStyle(Section):
    """A region's style with a style mask: only the part of the style image painted in the
    region's colour in ``mask`` (a colour-coded PNG the size of the style image) counts."""

    style: StyleRef
    mask: Annotated[str, Field(min_length=1)]


RegionValue = Annotated[StyleRef | RegionStyle | None, Field(
    description="the region's style (a style reference), {style, mask}, or null: the region "
                "keeps the content (content and image terms only)")]


# --- components --------------------------------------------------------------------------------
class LossTermConfig(_Mapping):
    """One loss term: a registered loss ``name``, its ``weight``, ``layers`` and own options.

    ``layers`` is a list of layer names (equal weights), a mapping of layer name to weight, a
    schedule, or ``None`` for the term's default layers. ``style`` picks the style image the
    term reads (scale control: one painting's brushwork at shallow layers, another's structure
    at deep ones; default: the job's style images, blended) and ``style_scale`` the size it
    reads it at (default: the config's ``style_scale``).
    """

    model_config = ConfigDict(extra="allow")

    name: Annotated[str, Field(min_length=1)]
    weight: NonNegative = 1.0
    layers: LayerSpec | None = None
    label: Annotated[str, Field(min_length=1)] | None = None
    style: StyleRef | None = None
    style_scale: Positive | None = None

    @property
    def options(self) -> dict[str, Any]:
        """The term's own options, as given (not ``name``, ``weight``, ``layers``, ``label``,
        ``style``, ``style_scale``)."""
        return _options(self, COMMON_TERM_KEYS)


class OptimizerConfig(_Mapping):
    """A registered optimiser, its number of ``iterations`` and its own options."""

    model_config = ConfigDict(extra="allow")

    name: Annotated[str, Field(min_length=1)]
    iterations: Count = 500

    @property
    def options(self) -> dict[str, Any]:
        """The optimiser's own options, as given."""
        return _options(self, {"name", "iterations"})


class ExtractorConfig(_Mapping):
    """A registered feature extractor and its options (``pooling``, ``weights`` for VGG)."""

    model_config = ConfigDict(extra="allow")

    name: Annotated[str, Field(min_length=1)]

    @property
    def options(self) -> dict[str, Any]:
        """The extractor's own options, as given."""
        return _options(self, {"name"})


def _options(model: BaseModel, common: set[str]) -> dict[str, Any]:
    data = model.model_dump(exclude_unset=True)
    return {key: value for key, value in data.items() if key not in common}


def check_weights(value: str | None) -> str | None:
    """A VGG ``weights`` value: a keyword or an existing file."""
    if value is not None and value not in WEIGHT_KEYWORDS and not Path(value).is_file():
        raise ValueError(f"must be one of {', '.join(WEIGHT_KEYWORDS)} or a weights file; "
                         f"no file {value!r}")
    return value


# --- the stylisation ---------------------------------------------------------------------------
def ladder(longest: int, min_size: int, ratio: float) -> list[int]:
    """The longest sides of a scale ladder, smallest first: ``longest / ratio^k`` rounded to
    whole pixels for ``k = 0, 1, ...`` while not below ``min_size`` (the full size always).

    Counted down from the full size, as crowsonkb's ``gen_scales``, so every rung is ``ratio``
    times the last (up to rounding) and the last step is not a sliver: ``(512, 128, √2)`` ->
    ``[128, 181, 256, 362, 512]``, ``(1000, 128, √2)`` -> ``[177, 250, 354, 500, 707, 1000]``.
    """
    sides, k = [longest], 1
    while True:
        side = round(longest / ratio ** k)
        if side < min_size:
            return sides[::-1]
        if side != sides[-1]:  # a ratio near 1 on a small image rounds twice to one side
            sides.append(side)
        k += 1
        if len(sides) > MAX_STAGES:
            raise ValueError(f"a ladder from {longest} px down to {min_size} px by ratio "
                             f"{ratio:g} has more than {MAX_STAGES} stages; raise ratio or "
                             f"min_size")


class MultiscaleConfig(Section):
    """Coarse to fine: each stage starts from the previous stage's result, upsampled.

    The stages are given in one of two forms:

    - ``scales``: fractions of the full size, rising to 1.0; ``iterations`` has one share per
      scale.
    - a ladder, ``min_size`` and ``ratio`` (crowsonkb's style-transfer-pytorch: 128 px up by
      √2): longest sides ``L, L/ratio, L/ratio², ...`` down to the last not below
      ``min_size`` (``L`` the result's longest side; see :func:`ladder`), run smallest first.
      ``iterations[i]`` is rung ``i``'s share and the last share repeats for the rungs after:
      ``[1000, 500]`` is 1000 shares for the first rung and 500 for every later one, so a
      list as long as the ladder gives each rung its own.

    In both forms ``iterations`` are shares of ``optimizer.iterations``, not steps:
    ``optimizer.iterations`` stays the one total that ``--iterations``, the progress display
    and the result read, and how many rungs a ladder has depends on the image when ``size`` is
    null. crowsonkb's 1000 steps then 500 per later scale at 512 px (5 rungs) is
    ``iterations: [1000, 500]`` with ``optimizer.iterations: 3000``.

    ``detail`` adds the content's fine detail back when upsampling (see
    :func:`nstkit.stylisation.upsample_stage`). ``carry_state`` hands the optimiser's state
    from stage to stage, each image-shaped tensor resized to the new size (Adam's moments,
    SGD's momentum; its step count kept), as crowsonkb warm-starts Adam; off, each stage
    starts a fresh optimiser. L-BFGS's history cannot carry (flat vectors of one stage's
    pixel count), so ``carry_state`` with ``lbfgs`` is a configuration error.
    """

    scales: Annotated[list[Positive], Field(min_length=1)] | None = None
    min_size: Annotated[Integer, Field(ge=16)] | None = None
    ratio: Annotated[Number, Field(gt=1, le=16)] = SQRT2
    iterations: Annotated[list[Positive], Field(min_length=1)]
    detail: Annotated[bool, Field(strict=True)] = True
    carry_state: Annotated[bool, Field(strict=True)] = False

    @field_validator("scales")
    @classmethod
    def _rising(cls, scales: list[float] | None) -> list[float] | None:
        if scales is not None and (scales != sorted(set(scales)) or scales[-1] != 1):
            raise ValueError(f"must rise strictly and end at 1.0, got {scales}")
        return scales

    @field_validator("iterations")
    @classmethod
    def _one_share_per_scale(cls, shares: list[float], info: ValidationInfo) -> list[float]:
        scales = info.data.get("scales")
        if scales is not None and len(scales) != len(shares):
            raise ValueError(f"needs one share per scale ({len(scales)}), got {len(shares)}")
        return shares

    @model_validator(mode="after")
    def _one_form(self) -> MultiscaleConfig:
        if self.scales is not None and self.min_size is not None:
            raise ValueError("scales and min_size are two forms of the stages; give one")
        if self.scales is None and self.min_size is None:
            raise ValueError("needs scales (fractions of size) or min_size (a ladder up to "
                             "size by ratio)")
        if self.scales is not None and "ratio" in self.model_fields_set:
            raise ValueError("ratio belongs to the ladder form (min_size); remove it or use "
                             "min_size instead of scales")
        return self

    def stages(self, longest: int | None = None) -> list[tuple[float, float]]:
        """``(scale, share)`` pairs, coarse to fine.

        Args:
            longest: the result's longest side in pixels; the ladder form needs it (its scales
                are ``side / longest``), the ``scales`` form ignores it.

        Raises:
            ValueError: a ladder without ``longest``, or with too many rungs. A ladder with
                fewer rungs than shares (a small result) takes the first shares.
        """
        if self.scales is not None:
            return list(zip(self.scales, self.iterations, strict=True))
        if longest is None:
            raise ValueError("the ladder form (min_size) needs the result's longest side")
        assert self.min_size is not None
        sides = ladder(longest, self.min_size, self.ratio)
        shares = self.iterations  # a small result has fewer rungs: the first shares apply
        return [(side / longest, shares[min(index, len(shares) - 1)])
                for index, side in enumerate(sides)]


class TilingConfig(Section):
    """Stylise the full-size stage(s) in square tiles, so memory depends on ``tile``, not on
    the image. Each step covers the image with tiles of ``tile`` px whose cores (the tile less
    ``overlap`` px of context each side) partition it, on a grid shifted at random per step.

    ``style: global`` matches the whole image's style statistics (a no-grad pass over the
    tiles first); ``local`` matches each tile's statistics to the style's (one pass)."""

    tile: Annotated[Integer, Field(ge=64)] = 512
    overlap: Annotated[Count, Field(le=1024)] = 64
    style: Literal["global", "local"] = "global"

    @model_validator(mode="after")
    def _core_left(self) -> TilingConfig:
        if self.tile - 2 * self.overlap < 32:
            raise ValueError(f"tile ({self.tile}) less twice the overlap ({self.overlap}) "
                             f"must leave at least 32 px")
        return self


def _tiling_form(value: Any) -> str | None:
    if isinstance(value, (TilingConfig, dict)):
        return "tiles"
    return "auto" if value == "auto" else None


Tiling = Annotated[
    Annotated[Literal["auto"], Tag("auto")] | Annotated[TilingConfig, Tag("tiles")],
    Discriminator(_tiling_form, custom_error_type="tiling",
                  custom_error_message="must be auto, null or a mapping {tile, overlap, style}"),
]


class OutputConfig(Section):
    """How results are written: format, JPEG/WebP quality, bits per channel (16 for PNG and
    TIFF only), intermediate images."""

    format: ImageFormat = "png"
    quality: Annotated[Integer, Field(ge=1, le=100)] = 95
    bit_depth: Literal[8, 16] = 8
    save_every: Count = 0

    @model_validator(mode="after")
    def _depth_fits_format(self) -> OutputConfig:
        if self.bit_depth == 16 and self.format not in ("png", "tiff"):
            raise ValueError(f"bit_depth 16 needs format png or tiff; {self.format} is 8-bit "
                             f"only (use bit_depth: 8, or format: png or tiff)")
        return self


def _check_init(value: str) -> str:
    if value not in INIT_CHOICES and not Path(value).is_file():
        raise ValueError(f"must be one of {', '.join(INIT_CHOICES)} or an image file; "
                         f"no file {value!r}")
    return value


def default_losses() -> list[LossTermConfig]:
    """Gatys et al. 2016: content at ``relu4_2``, Gram style at ``relu1_1 .. relu5_1``."""
    return [LossTermConfig(name="content", weight=1.0, layers=["relu4_2"]),
            LossTermConfig(name="gram", weight=1e-3, layers=list(GATYS_STYLE_LAYERS))]


class StylizeConfig(_Mapping):
    """Everything that decides a stylisation's result (Gatys et al. 2016 by default).

    ``strength``: how strongly the style shows: every term that reads the style images
    (:attr:`nstkit.losses.LossTerm.reads_style`) has its weight multiplied by it, relative to
    the content and image terms; 1 is the recipe as written, 2 twice the style, 0.5 half.

    ``ema``: keep an exponential moving average of the iterates with this decay (crowsonkb's
    iterate averaging: 0.99) and make the average each stage's result; ``null`` (the default)
    keeps the last iterate. A key of its own, not an option of ``optimizer``, whose extra keys
    are the optimiser factory's arguments; see :func:`nstkit.optimisation.optimise`.
    """

    model_config = ConfigDict(extra="forbid", validate_default=False)

    extractor: ExtractorConfig = Field(default_factory=lambda: ExtractorConfig(
        name="vgg19", pooling="max", weights=None))
    size: Annotated[Integer, Field(ge=16)] | None = 512
    style_scale: Positive = 1.0
    seed: Count | None = 0
    init: Annotated[str, Field(min_length=1), AfterValidator(_check_init)] = "content"
    noise_scale: Annotated[NonNegative, Field(le=0.5)] = 0.1
    losses: Annotated[list[LossTermConfig], Field(min_length=1)] = Field(
        default_factory=default_losses)
    preserve_colour: PreserveColour | None = None
    optimizer: OptimizerConfig = Field(default_factory=lambda: OptimizerConfig(name="lbfgs"))
    ema: Annotated[Number, Field(gt=0, lt=1)] | None = None
    strength: Annotated[Positive, Field(le=1e4)] = 1.0
    multiscale: MultiscaleConfig | None = None
    precision: Precision = "fp32"
    tiling: Tiling | None = None
    output: OutputConfig = Field(default_factory=OutputConfig)
    styles: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    regions: dict[Colour, RegionValue] | None = None
    masks: Annotated[str, Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _style_refs(self) -> StylizeConfig:
        """Style references name a ``styles`` stem or an existing file; a style mask exists
        and goes with a named image (not the job's own style, which changes per job)."""
        stems = {Path(path).stem for path in self.styles}
        problems = [f"styles: no image file {path!r}" for path in self.styles
                    if not Path(path).is_file()]

        def check(ref: Any, where: str) -> None:
            if isinstance(ref, str) and ref != JOB_STYLE and ref not in stems \
                    and not Path(ref).is_file():
                problems.append(f"{where}: {ref!r} is not style, a stem of styles "
                                f"({', '.join(sorted(stems)) or 'none'}) or an image file")

        for index, term in enumerate(self.losses):
            check(term.style, f"losses.{index}.style")
        for colour, value in (self.regions or {}).items():
            if isinstance(value, RegionStyle):
                check(value.style, f"regions.{colour}.style")
                if value.style == JOB_STYLE:
                    problems.append(f"regions.{colour}: a style mask needs a named style "
                                    f"image, not the job's own (style)")
                if not Path(value.mask).is_file():
                    problems.append(f"regions.{colour}.mask: no file {value.mask!r}")
            else:
                check(value, f"regions.{colour}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @field_validator("losses")
    @classmethod
    def _something_to_optimise(cls, losses: list[LossTermConfig]) -> list[LossTermConfig]:
        if all(term.weight == 0 for term in losses):
            raise ValueError("every term has weight 0; nothing to optimise")
        return losses

    @field_validator("multiscale")
    @classmethod
    def _stages_fit(cls, multiscale: MultiscaleConfig | None,
                    info: ValidationInfo) -> MultiscaleConfig | None:
        optimizer, size = info.data.get("optimizer"), info.data.get("size")
        if multiscale is None:
            return multiscale
        if multiscale.carry_state and optimizer is not None and optimizer.name == "lbfgs":
            raise ValueError("carry_state cannot carry L-BFGS's history (flat vectors of one "
                             "stage's pixel count) to another size; use optimizer adam or "
                             "sgd, or carry_state: false")
        if multiscale.min_size is not None and size is not None:
            multiscale.stages(size)  # the result's longest side is size: check the ladder now
        return multiscale

    @property
    def iterations(self) -> int:
        return self.optimizer.iterations


class RecipeConfig(StylizeConfig):
    """A recipe: a stylisation plus its format ``version``, ``name`` and ``description``."""

    version: Annotated[int, BeforeValidator(_version), WithJsonSchema({"const": VERSION})] = \
        VERSION
    name: Annotated[str, Field(pattern=NAME_PATTERN)] | None = None
    description: str = ""


def recipe_defaults() -> dict[str, Any]:
    """Every recipe key with its default, as a recipe file spells it (the base that recipes,
    ``extends`` and ``--set`` are merged onto)."""
    config = RecipeConfig()
    data = {"version": VERSION, "name": None, "description": "",
            **config.model_dump(exclude={"version", "name", "description"})}
    data["extractor"] = config.extractor.model_dump(exclude_unset=True)
    data["optimizer"] = config.optimizer.model_dump()
    data["losses"] = [term.model_dump(exclude_unset=True) for term in config.losses]
    return data
