"""Layer names and layer weights, without torch: what recipes are checked against.

A :class:`LayerTable` is an extractor's layer names in forward order plus aliases; the VGG
tables are built from torchvision's configurations, so ``nstkit validate`` and ``nstkit layers``
answer without building a network. Layer-weight schedules turn a recipe's ``layers`` value into
the ``{layer: weight}`` mapping a loss term takes.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nstkit.errors import UnknownComponentError

# torchvision's VGG configurations "D" (VGG16) and "E" (VGG19): conv widths, "M" a max-pool
CFGS: dict[str, list[int | str]] = {
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512,
          "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512,
          512, 512, 512, "M"],
}
ARCH_CFG = {"vgg16": "D", "vgg19": "E"}
GATYS_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
"""Gatys et al. 2016's style layers: the first ReLU of every VGG block."""


def suggest(name: str, choices: Iterable[str]) -> str:
    """``" Did you mean 'x'?"`` for the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


@dataclass(frozen=True)
class LayerTable:
    """An extractor's layer names in forward order, and aliases for some of them.

    Attributes:
        names: canonical names, first layer first (``conv1_1, relu1_1, ..., pool5``).
        aliases: other name -> canonical name (``block4_conv2`` -> ``relu4_2``).
        owner: what the names belong to, for messages (``vgg19``).
    """

    names: tuple[str, ...]
    aliases: Mapping[str, str] = field(default_factory=dict)
    owner: str = "the extractor"

    def resolve(self, layer: str) -> str:
        """The canonical name of ``layer``; unknown names raise with the valid ones listed."""
        if layer in self.names:
            return layer
        if layer in self.aliases:
            return self.aliases[layer]
        raise UnknownComponentError(
            f"unknown layer {layer!r} for {self.owner}."
            f"{suggest(layer, [*self.names, *self.aliases])} Valid layers: {', '.join(self.names)}."
        )

    def depth(self, layer: str) -> int:
        """Position of ``layer`` in forward order (0 is the first layer)."""
        return self.names.index(self.resolve(layer))


def vgg_layer_names(arch: str) -> tuple[str, ...]:
    """Paper names of every module of VGG ``features``: ``conv1_1, relu1_1, ..., pool5``."""
    names: list[str] = []
    block, conv = 1, 0
    for item in CFGS[ARCH_CFG[arch]]:
        if item == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 0
        else:
            conv += 1
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
    return tuple(names)


def vgg_aliases(names: Iterable[str]) -> dict[str, str]:
    """Keras names of the seeds: ``block4_conv2`` is the ReLU output ``relu4_2``."""
    aliases = {}
    for name in names:
        if name.startswith("relu"):
            b, i = name[4:].split("_")
            aliases[f"block{b}_conv{i}"] = name
        elif name.startswith("pool"):
            aliases[f"block{name[4:]}_pool"] = name
    return aliases


def vgg_layer_table(arch: str) -> LayerTable:
    """The layer table of ``vgg16`` or ``vgg19`` (Keras aliases included)."""
    names = vgg_layer_names(arch)
    return LayerTable(names, vgg_aliases(names), arch)


def equal_weights(layers: Sequence[str]) -> dict[str, float]:
    """``1 / N`` for each of the ``N`` layers."""
    return {layer: 1.0 / len(layers) for layer in layers}


def geometric_weights(layers: Sequence[str], ratio: float = 2.0, *,
                      rising: bool = False) -> dict[str, float]:
    """Weights changing by ``ratio`` from one layer to the next, normalised to sum to 1.

    Novak & Nikulin (2016): style weights fall with depth (``w_l ∝ ratio^(L-1-l)``, the default)
    and content weights rise with depth (``rising=True``, ``w_l ∝ ratio^l``).
    """
    n = len(layers)
    raw = [ratio ** (i if rising else n - 1 - i) for i in range(n)]
    return {layer: w / sum(raw) for layer, w in zip(layers, raw, strict=True)}


def resolve_layer_spec(spec: Any) -> list[str] | dict[str, float] | None:
    """What a loss factory's ``layers`` argument takes, from a recipe's ``layers`` value.

    - ``None``: the term's default layers.
    - ``[relu1_1, relu2_1]``: equal weights.
    - ``{relu1_1: 0.2, relu2_1: 0.8}``: the weights as given.
    - ``{schedule: geometric, layers: [...], ratio: 2, rising: false}``: weights changing by
      ``ratio`` per layer, falling with depth (or rising), normalised to sum to 1
      (Novak & Nikulin 2016); ``schedule: equal`` gives ``1 / N`` each.
    """
    if spec is None or isinstance(spec, list):
        return spec
    if not isinstance(spec, Mapping):
        raise TypeError(f"layers must be a list or a mapping, got {spec!r}")
    if "schedule" not in spec:
        return {str(layer): float(weight) for layer, weight in spec.items()}
    layers = list(spec["layers"])
    if spec["schedule"] == "equal":
        return equal_weights(layers)
    if spec["schedule"] == "geometric":
        return geometric_weights(layers, float(spec.get("ratio", 2.0)),
                                 rising=bool(spec.get("rising", False)))
    raise ValueError(f"unknown layer schedule {spec['schedule']!r}")


def layer_names_in(spec: Any) -> list[str]:
    """Every layer name a recipe's ``layers`` value mentions (whatever its form)."""
    if isinstance(spec, Mapping):
        return layer_names_in(spec.get("layers")) if "schedule" in spec else [str(k) for k in spec]
    return [name for name in spec if isinstance(name, str)] if isinstance(spec, list) else []
