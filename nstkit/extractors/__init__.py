"""Feature extractors: named intermediate activations of a pretrained network."""

from nstkit.extractors.base import FeatureExtractor, InputNormalization
from nstkit.extractors.vgg import VGGExtractor, vgg_layer_names

__all__ = ["FeatureExtractor", "InputNormalization", "VGGExtractor", "vgg_layer_names"]
