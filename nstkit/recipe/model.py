"""A resolved, validated recipe: its typed configuration and the data it was read as."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from nstkit.config import RecipeConfig, recipe_defaults
from nstkit.recipe.yamlio import dump

# the keys of the first recipe format, always hashed; a key added since is hashed only when it
# differs from its default, so adding a key never makes finished outputs look out of date
FIRST_KEYS = ("version", "name", "extractor", "size", "style_scale", "seed", "init",
              "noise_scale", "losses", "preserve_colour", "optimizer", "multiscale", "output")
# the same for the keys of ``output`` (``save_every`` is never hashed: it changes no result)
FIRST_OUTPUT_KEYS = ("format", "quality")


def _file_digest(value: Any) -> str | None:
    """sha256 of the file ``value`` names, if it names one."""
    if not isinstance(value, str) or not Path(value).is_file():
        return None
    return hashlib.sha256(Path(value).read_bytes()).hexdigest()


@dataclass
class Recipe:
    """A recipe after defaults, ``extends`` and ``--set``.

    Attributes:
        data: the resolved recipe as written (every key present), as recorded with each output
            and hashed.
        config: the same, validated and typed: what :func:`nstkit.stylize` runs.
        source: the file it was read from (``"gatys.yaml (built-in)"`` for built-ins).
        chain: every file of the ``extends`` chain, root first.
    """

    data: dict[str, Any]
    config: RecipeConfig
    source: str
    chain: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.data["name"])

    @property
    def description(self) -> str:
        return str(self.data.get("description") or "")

    @property
    def iterations(self) -> int:
        return self.config.optimizer.iterations

    @cached_property
    def hash(self) -> str:
        """sha256 of everything that changes the result: the recipe without its description
        and ``output.save_every``, plus the bytes of an ``init`` image or a weights file."""
        defaults = recipe_defaults()
        meaningful = {k: v for k, v in self.data.items()
                      if k in FIRST_KEYS or (k != "description" and v != defaults.get(k))}
        meaningful["output"] = {k: v for k, v in self.data["output"].items()
                                if k in FIRST_OUTPUT_KEYS
                                or (k != "save_every" and v != defaults["output"].get(k))}
        meaningful["files"] = {key: _file_digest(self.data[key] if key == "init"
                                                 else self.data["extractor"].get(key))
                               for key in ("init", "weights")}
        text = json.dumps(meaningful, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def to_yaml(self) -> str:
        """The resolved recipe as YAML."""
        return dump(self.data)
