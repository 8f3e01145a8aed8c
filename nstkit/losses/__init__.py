"""Loss terms: each a function plus an ``nn.Module`` (:class:`LossTerm`) calling it."""

from nstkit.layers import equal_weights, geometric_weights
from nstkit.losses.base import ImageTerm, LossTerm, StatisticLoss, Targets, layer_weights, positions
from nstkit.losses.colour import ColourLoss
from nstkit.losses.content import ContentLoss, content_loss
from nstkit.losses.gram import STYLE_LAYERS, GramLoss, ShiftedGramLoss, gram_loss, gram_matrix
from nstkit.losses.histogram import HistogramLoss, histogram_loss, match_histograms
from nstkit.losses.keep import KeepLoss, keep_loss
from nstkit.losses.mean_std import MeanStdLoss, channel_mean_std, mean_std_loss
from nstkit.losses.sliced import SlicedWassersteinLoss, random_directions, sliced_wasserstein_loss
from nstkit.losses.tv import TVLoss, tv_loss
from nstkit.losses.wasserstein import WassersteinLoss, gaussian_wasserstein, sqrtm

__all__ = [
    "STYLE_LAYERS",
    "ColourLoss",
    "ContentLoss",
    "GramLoss",
    "HistogramLoss",
    "ImageTerm",
    "KeepLoss",
    "LossTerm",
    "MeanStdLoss",
    "ShiftedGramLoss",
    "SlicedWassersteinLoss",
    "StatisticLoss",
    "TVLoss",
    "Targets",
    "WassersteinLoss",
    "channel_mean_std",
    "content_loss",
    "equal_weights",
    "gaussian_wasserstein",
    "geometric_weights",
    "gram_loss",
    "gram_matrix",
    "histogram_loss",
    "keep_loss",
    "layer_weights",
    "match_histograms",
    "mean_std_loss",
    "positions",
    "random_directions",
    "sliced_wasserstein_loss",
    "sqrtm",
    "tv_loss",
]
