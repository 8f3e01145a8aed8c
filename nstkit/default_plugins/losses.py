"""Built-in loss terms: content, gram, shifted_gram, tv, colour (imported when first built)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from nstkit.config import ImageTermOptions, Number, Options
from nstkit.hookspecs import Register, hookimpl


class ContentOptions(Options):
    """Feature reconstruction (MSE); no options besides ``layers``."""


class GramOptions(Options):
    """Gram-matrix style loss; ``shift`` s in (F + s)(F + s)^T (default: the term's own)."""

    shift: Number | None = None


class TVOptions(ImageTermOptions):
    """Total variation (dx^2 + dy^2)^(exponent/2) of the image."""

    exponent: Annotated[Number, Field(gt=0)] = 2.0
    anisotropic: Annotated[bool, Field(strict=True)] = False


class ColourOptions(ImageTermOptions):
    """Chroma distance to the content image."""

    space: Literal["ycbcr", "lab"] = "ycbcr"


@hookimpl
def register_losses(register: Register) -> None:
    register("content", "nstkit.losses.content:ContentLoss", options=ContentOptions,
             description="feature reconstruction (MSE), relu4_2")
    register("gram", "nstkit.losses.gram:GramLoss", options=GramOptions,
             description="Gram-matrix style loss, relu1_1..relu5_1")
    register("shifted_gram", "nstkit.losses.gram:ShiftedGramLoss", options=GramOptions,
             description="Gram of F - 1 (Novak & Nikulin)")
    register("tv", "nstkit.losses.tv:TVLoss", options=TVOptions,
             description="total variation (dx^2 + dy^2)^(exponent/2)")
    register("colour", "nstkit.losses.colour:ColourLoss", options=ColourOptions,
             description="chroma distance to the content (YCbCr or Lab)")
