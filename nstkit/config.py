"""The typed configuration of one stylisation: the only source of its defaults, choices and
checks.

:class:`StylizeConfig` is what :func:`nstkit.stylize` runs; :class:`RecipeConfig` adds a
recipe's ``version``, ``name`` and ``description``. Loss terms, the optimiser and the extractor
are open-ended here (any registered name, any options); :mod:`nstkit.config_schema` narrows
them to the components a plugin host has registered, each with its own options model.

Imports pydantic and nothing heavy (no torch): ``nstkit validate`` runs on this.
"""

from __future__ import annotations

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


# --- components --------------------------------------------------------------------------------
class LossTermConfig(_Mapping):
    """One loss term: a registered loss ``name``, its ``weight``, ``layers`` and own options.

    ``layers`` is a list of layer names (equal weights), a mapping of layer name to weight, a
    schedule, or ``None`` for the term's default layers.
    """

    model_config = ConfigDict(extra="allow")

    name: Annotated[str, Field(min_length=1)]
    weight: NonNegative = 1.0
    layers: LayerSpec | None = None
    label: Annotated[str, Field(min_length=1)] | None = None

    @property
    def options(self) -> dict[str, Any]:
        """The term's own options, as given (not ``name``, ``weight``, ``layers``, ``label``)."""
        return _options(self, {"name", "weight", "layers", "label"})


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
class MultiscaleConfig(Section):
    """Coarse to fine: stage ``i`` runs ``iterations[i]`` shares of the steps at ``scales[i]``
    times the size; each stage starts from the previous result, upsampled."""

    scales: Annotated[list[Positive], Field(min_length=1)]
    iterations: Annotated[list[Positive], Field(min_length=1)]
    detail: Annotated[bool, Field(strict=True)] = True

    @field_validator("scales")
    @classmethod
    def _rising(cls, scales: list[float]) -> list[float]:
        if scales != sorted(set(scales)) or scales[-1] != 1:
            raise ValueError(f"must rise strictly and end at 1.0, got {scales}")
        return scales

    @field_validator("iterations")
    @classmethod
    def _one_share_per_scale(cls, shares: list[float], info: ValidationInfo) -> list[float]:
        scales = info.data.get("scales")
        if scales is not None and len(scales) != len(shares):
            raise ValueError(f"needs one share per scale ({len(scales)}), got {len(shares)}")
        return shares

    def stages(self) -> list[tuple[float, float]]:
        """``(scale, share)`` pairs, coarse to fine."""
        return list(zip(self.scales, self.iterations, strict=True))


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
    """Everything that decides a stylisation's result (Gatys et al. 2016 by default)."""

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
    multiscale: MultiscaleConfig | None = None
    precision: Precision = "fp32"
    tiling: Tiling | None = None
    output: OutputConfig = Field(default_factory=OutputConfig)

    @field_validator("losses")
    @classmethod
    def _something_to_optimise(cls, losses: list[LossTermConfig]) -> list[LossTermConfig]:
        if all(term.weight == 0 for term in losses):
            raise ValueError("every term has weight 0; nothing to optimise")
        return losses

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
