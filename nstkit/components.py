"""Building what a stylisation runs on: the device, the extractor and the loss terms."""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Any

import torch

from nstkit.config import LossTermConfig
from nstkit.errors import NstkitError, PluginError
from nstkit.extractors import FeatureExtractor
from nstkit.layers import resolve_layer_spec
from nstkit.losses import LossTerm
from nstkit.optimisation import WeightedTerm
from nstkit.plugins import PluginHost
from nstkit.registry import factory_key


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when available, else the CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextlib.contextmanager
def fast_cuda(device: torch.device) -> Iterator[None]:
    """On CUDA, TF32 for float32 matmuls and convolutions while the block runs (restored
    after); elsewhere nothing."""
    if device.type != "cuda":
        yield
        return
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9
        saved = matmul.fp32_precision, conv.fp32_precision
        matmul.fp32_precision = conv.fp32_precision = "tf32"
        try:
            yield
        finally:
            matmul.fp32_precision, conv.fp32_precision = saved
        return
    saved = matmul.allow_tf32, torch.backends.cudnn.allow_tf32  # pragma: no cover
    matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def memory_format(device: torch.device) -> torch.memory_format:
    """``channels_last`` on CUDA (cuDNN's fast layout for convolutions), else contiguous."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


EXTRACTOR_CACHE_SIZE = 4
_extractors: OrderedDict[Hashable, FeatureExtractor] = OrderedDict()


def build_extractor(host: PluginHost, name: str, device: torch.device,
                    **options: Any) -> FeatureExtractor:
    """The extractor ``name`` on ``device``, built once per factory, options and device.

    The last ``EXTRACTOR_CACHE_SIZE`` extractors are kept (a VGG19 holds 80 MB of weights), so
    a long process that meets many weight files or options does not keep them all. Equal
    factories share entries, whichever plugin host asks.

    Raises:
        NstkitError: the extractor failed to build, or there is no room for it on the GPU.
    """
    entry = host.extractors.entry(name)
    key = (factory_key(entry.factory), device,
           tuple(sorted((k, str(v)) for k, v in options.items())))
    if key in _extractors:
        _extractors.move_to_end(key)
        return _extractors[key]
    try:
        extractor = entry.factory(**options)
    except (NstkitError, ValueError, TypeError):
        raise
    except Exception as exc:
        raise PluginError(entry.plugin, f"extractor {name!r} failed: {exc}") from exc
    try:
        _extractors[key] = extractor.to(device, memory_format=memory_format(device))
    except torch.cuda.OutOfMemoryError as exc:
        raise NstkitError(f"CUDA out of memory moving extractor {name!r} to {device} "
                          f"({exc}); free the GPU or use --device cpu") from None
    while len(_extractors) > EXTRACTOR_CACHE_SIZE:
        _extractors.popitem(last=False)
    return _extractors[key]


def build_terms(host: PluginHost, specs: Sequence[LossTermConfig | Mapping[str, Any]],
                strength: float = 1.0) -> list[WeightedTerm]:
    """Instantiate each loss term through its registered factory (weight 0 terms dropped);
    a term's label is its ``label``, else its name (``name#2`` for a second one). The weight
    of every term that reads the style (:attr:`~nstkit.losses.LossTerm.reads_style`) is
    multiplied by ``strength``.

    Raises:
        PluginError: a factory did not return a :class:`~nstkit.losses.LossTerm`, or, with a
            ``strength`` other than 1, a term does not say whether it reads the style.
    """
    terms, seen = [], {}
    for spec in specs:
        spec = spec if isinstance(spec, LossTermConfig) else LossTermConfig.model_validate(spec)
        if not spec.weight:
            continue
        entry = host.losses.entry(spec.name)
        layers = spec.layers.model_dump() if hasattr(spec.layers, "model_dump") else spec.layers
        module = entry.factory(layers=resolve_layer_spec(layers), **spec.options)
        if not isinstance(module, LossTerm):
            raise PluginError(entry.plugin, f"loss {spec.name!r} factory returned "
                              f"{type(module).__name__}, not an nstkit.losses.LossTerm")
        seen[spec.name] = seen.get(spec.name, 0) + 1
        count = seen[spec.name]
        label = spec.label or (spec.name if count == 1 else f"{spec.name}#{count}")
        weight = float(spec.weight) * _strength_factor(module, spec.name, entry.plugin, strength)
        terms.append(WeightedTerm(label, weight, module, entry.plugin))
    return terms


def _strength_factor(module: LossTerm, name: str, plugin: str, strength: float) -> float:
    if strength == 1:
        return 1.0
    if module.reads_style is None:
        raise PluginError(plugin, f"strength {strength:g} scales the terms that read the style, "
                          f"but loss {name!r} ({type(module).__name__}) does not say whether "
                          f"it does: set reads_style = True or False on the class, or use "
                          f"strength 1 and scale its weight instead")
    return strength if module.reads_style else 1.0
