"""Layer specs in recipes: a list, a mapping of layer to weight, or a named schedule."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nstkit.losses import equal_weights, geometric_weights


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
