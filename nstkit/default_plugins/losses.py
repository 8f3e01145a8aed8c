"""Built-in loss terms: content, gram, shifted_gram, tv, colour."""

from __future__ import annotations

from nstkit.hookspecs import Register, hookimpl
from nstkit.losses import ColourLoss, ContentLoss, GramLoss, ShiftedGramLoss, TVLoss


@hookimpl
def register_losses(register: Register) -> None:
    register("content", ContentLoss, description="feature reconstruction (MSE), relu4_2")
    register("gram", GramLoss, description="Gram-matrix style loss, relu1_1..relu5_1")
    register("shifted_gram", ShiftedGramLoss, description="Gram of F - 1 (Novak & Nikulin)")
    register("tv", TVLoss, description="total variation (dx^2 + dy^2)^(exponent/2)")
    register("colour", ColourLoss, description="chroma distance to the content (YCbCr or Lab)")
