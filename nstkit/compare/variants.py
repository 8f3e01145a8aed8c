"""What ``nstkit compare`` compares: recipes, or one recipe across the values of one key."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nstkit.errors import NstkitError
from nstkit.recipe import Recipe

if TYPE_CHECKING:
    from nstkit.executors import Executor

Claim = Callable[[str, list[str]], "tuple[Recipe, Executor] | None"]
"""``claim(ref, sets)``: a plugin's ``(recipe, executor)`` for a RECIPES argument that is not
a recipe (:meth:`nstkit.plugins.PluginHost.compare_variant`), else ``None``."""

_UNSAFE = re.compile(r"[^\w.=+-]+")


@dataclass(frozen=True)
class Variant:
    """One column of the comparison.

    Attributes:
        label: the column header, e.g. ``gatys`` or ``gatys seed=2``.
        recipe: the resolved recipe (run options and ``--set`` applied).
        folder: a file-safe folder name for its outputs under ``OUT/runs/``.
        executor: what makes its outputs, when not the comparison's engine (a variant a plugin
            claimed: a trained model's, say).
    """

    label: str
    recipe: Recipe
    folder: str
    executor: Executor | None = None


def split_values(text: str) -> list[str]:
    """``"1,[a, b],x"`` -> ``["1", "[a, b]", "x"]``: commas inside brackets do not split."""
    values, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            values.append(current.strip())
            current = ""
        else:
            current += char
    values.append(current.strip())
    return values


def parse_sweep(text: str) -> tuple[str, list[str]]:
    """``"extractor.pooling=max,avg"`` -> ``("extractor.pooling", ["max", "avg"])``."""
    key, sep, raw = text.partition("=")
    values = split_values(raw) if sep else []
    if not key.strip() or len(values) < 2 or any(not v for v in values):
        raise NstkitError(f"--sweep must be key.path=v1,v2[,...] with two or more values, "
                          f"got {text!r}")
    if len(set(values)) != len(values):
        raise NstkitError(f"--sweep {text!r} lists a value twice")
    return key.strip(), values


def plan_variants(recipes: Sequence[str], sets: Sequence[str], sweep: str | None,
                  load: Callable[[str, list[str]], Recipe],
                  claim: Claim | None = None) -> list[Variant]:
    """Every recipe (times every sweep value), loaded with ``sets`` then the sweep's ``--set``;
    an argument ``claim`` returns a recipe and executor for is that variant instead.

    Raises:
        NstkitError: no recipe, a recipe named twice, or a malformed ``--sweep``.
    """
    if not recipes:
        raise NstkitError("name at least one recipe to compare")
    if len(set(recipes)) != len(recipes):
        raise NstkitError(f"a recipe is named twice: {' '.join(recipes)}")
    if sweep is None and len(recipes) < 2:
        raise NstkitError("compare needs two or more recipes, or --sweep key=v1,v2")
    key, values = parse_sweep(sweep) if sweep else ("", [])
    variants: list[Variant] = []
    for ref in recipes:
        for value in values or [None]:
            extra = [] if value is None else [f"{key}={value}"]
            claimed = claim(ref, [*sets, *extra]) if claim is not None else None
            recipe, executor = claimed if claimed is not None \
                else (load(ref, [*sets, *extra]), None)
            label = ref if value is None else f"{ref} {key}={value}"
            variants.append(Variant(label, recipe, _folder(label, variants), executor))
    return variants


def _folder(label: str, taken: Sequence[Variant]) -> str:
    base = _UNSAFE.sub("_", label.replace("/", "_")).strip("._") or "variant"
    name, count = base[:80], 1
    while name in {v.folder for v in taken}:
        count += 1
        name = f"{base[:76]}-{count}"
    return name
