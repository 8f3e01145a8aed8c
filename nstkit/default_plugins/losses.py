"""Built-in loss terms: content, gram, shifted_gram, wasserstein, mean_std, sliced_wasserstein,
histogram, tv, colour, keep (imported when first built)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from nstkit.config import Count, ImageTermOptions, Integer, Number, Options, Positive
from nstkit.hookspecs import Register, hookimpl


class ContentOptions(Options):
    """Feature reconstruction (MSE); no options besides ``layers``."""


class GramOptions(Options):
    """Gram-matrix style loss; ``shift`` s in (F + s)(F + s)^T (default: the term's own)."""

    shift: Number | None = None


class WassersteinOptions(Options):
    """Gaussian 2-Wasserstein style loss; ``eps`` the covariances' ridge relative to the
    style covariance's Frobenius norm."""

    eps: Positive = 1e-3
    root: Literal["eigh", "newton_schulz"] = "eigh"  # how the matrix square roots are taken
    iterations: Annotated[int, Field(strict=True, ge=1, le=100)] = 20  # Newton-Schulz steps


class MeanStdOptions(Options):
    """Per-channel mean and standard deviation; ``eps`` added to the variance."""

    eps: Positive = 1e-5


class SlicedWassersteinOptions(Options):
    """Sliced Wasserstein style loss; ``projections`` per layer (default: the layer's
    channels), ``seed`` of the random directions (redrawn every step)."""

    projections: Annotated[Integer, Field(ge=1)] | None = None
    seed: Count = 0


class HistogramOptions(Options):
    """Per-channel histogram matching; no options besides ``layers``."""


class TVOptions(ImageTermOptions):
    """Total variation (dx^2 + dy^2)^(exponent/2) of the image."""

    exponent: Annotated[Number, Field(gt=0)] = 2.0
    anisotropic: Annotated[bool, Field(strict=True)] = False


class KeepOptions(ImageTermOptions):
    """Pixels of a masked job's kept regions (mapped to null) held to the photo's."""


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
    register("wasserstein", "nstkit.losses.wasserstein:WassersteinLoss",
             options=WassersteinOptions,
             description="2-Wasserstein distance of Gaussian feature fits, relu1_1..relu5_1")
    register("mean_std", "nstkit.losses.mean_std:MeanStdLoss", options=MeanStdOptions,
             description="per-channel mean and std (Huang & Belongie), relu1_1..relu4_1")
    register("sliced_wasserstein", "nstkit.losses.sliced:SlicedWassersteinLoss",
             options=SlicedWassersteinOptions,
             description="sliced Wasserstein, random projections (Heitz et al.), relu1_1..relu5_1")
    register("histogram", "nstkit.losses.histogram:HistogramLoss", options=HistogramOptions,
             description="per-channel histogram matching (Risser et al.), relu1_1, relu4_1")
    register("tv", "nstkit.losses.tv:TVLoss", options=TVOptions,
             description="total variation (dx^2 + dy^2)^(exponent/2)")
    register("colour", "nstkit.losses.colour:ColourLoss", options=ColourOptions,
             description="chroma distance to the content (YCbCr or Lab)")
    register("keep", "nstkit.losses.keep:KeepLoss", options=KeepOptions,
             description="pixels of the regions mapped to null held to the photo's")
