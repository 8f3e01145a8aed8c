"""Loss terms: each a function plus an ``nn.Module`` (:class:`LossTerm`) calling it."""

from nstkit.layers import equal_weights, geometric_weights
from nstkit.losses.base import LossTerm, StatisticLoss, Targets, layer_weights, positions
from nstkit.losses.colour import ColourLoss
from nstkit.losses.content import ContentLoss, content_loss
from nstkit.losses.gram import STYLE_LAYERS, GramLoss, ShiftedGramLoss, gram_loss, gram_matrix
from nstkit.losses.tv import TVLoss, tv_loss

__all__ = [
    "STYLE_LAYERS",
    "ColourLoss",
    "ContentLoss",
    "GramLoss",
    "LossTerm",
    "ShiftedGramLoss",
    "StatisticLoss",
    "TVLoss",
    "Targets",
    "content_loss",
    "equal_weights",
    "geometric_weights",
    "gram_loss",
    "gram_matrix",
    "layer_weights",
    "positions",
    "tv_loss",
]
