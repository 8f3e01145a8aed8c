"""Reading and writing recipe YAML: safe loading only, and ``1e-3`` read as a number."""

from __future__ import annotations

import re
from typing import Any

import yaml


class RecipeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no object tags) that also reads ``1e-3`` as a float.

    PyYAML follows YAML 1.1, where a float needs a dot; style weights are written ``1e-3``.
    """


RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse(text: str) -> Any:
    """Parse YAML text with :class:`RecipeLoader` (raises ``yaml.YAMLError``)."""
    return yaml.load(text, Loader=RecipeLoader)


def dump(data: Any) -> str:
    """Block-style YAML with keys in the order given."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
