"""Built-in feature extractors: ``vgg16`` and ``vgg19`` (imported when first built)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from nstkit.config import Options, Pooling, check_weights
from nstkit.hookspecs import Register, hookimpl
from nstkit.layers import vgg_layer_table


class VGGOptions(Options):
    """Options of the VGG extractors."""

    pooling: Pooling = "max"
    weights: Annotated[str | None, AfterValidator(check_weights)] = None
    normalization: Annotated[str, AfterValidator(lambda v: _normalization(v))] | None = None


def _normalization(value: str) -> str:
    if value not in ("torchvision", "caffe"):
        raise ValueError(f"must be 'torchvision' or 'caffe', got {value!r}")
    return value


@hookimpl
def register_extractors(register: Register) -> None:
    register("vgg16", "nstkit.extractors.vgg:vgg16", options=VGGOptions,
             layers=vgg_layer_table("vgg16"),
             description="VGG16 (torchvision weights by default), max or avg pooling")
    register("vgg19", "nstkit.extractors.vgg:vgg19", options=VGGOptions,
             layers=vgg_layer_table("vgg19"),
             description="VGG19 (original Simonyan & Zisserman weights by default)")
