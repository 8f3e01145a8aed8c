"""Built-in feature extractors: ``vgg16`` and ``vgg19``."""

from __future__ import annotations

from functools import partial

from nstkit.extractors import VGGExtractor
from nstkit.hookspecs import Register, hookimpl


@hookimpl
def register_extractors(register: Register) -> None:
    register("vgg16", partial(VGGExtractor, "vgg16"),
             description="VGG16 (torchvision weights by default), max or avg pooling")
    register("vgg19", partial(VGGExtractor, "vgg19"),
             description="VGG19 (original Simonyan & Zisserman weights by default)")
