"""The options of the ``mrf`` loss, as a pydantic model: recipes are checked against it without
importing torch (``nstkit validate`` and ``nstkit recipes schema`` stay fast)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from nstkit.config import Options

PositiveInt = Annotated[int, Field(strict=True, ge=1)]


class MRFOptions(Options):
    """MRF patch-matching style loss (Li & Wand 2016), default layers relu3_1, relu4_1.

    Mirrors the keyword options of :class:`nstkit_mrf.loss.MRFLoss` (``layers`` is the loss
    term's own key); the plugin's tests check that the defaults agree.
    """

    patch_size: PositiveInt = Field(3, description="side k of the k x k neural patches")
    style_stride: PositiveInt = Field(1, description="step between the style patches")
    image_stride: PositiveInt = Field(1, description="step between the image's patches")
    chunk_size: PositiveInt = Field(1024, description="style patches matched per conv2d call")
