"""A resolved, validated recipe and what it means for :func:`nstkit.stylize`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from nstkit.recipe.layers import resolve_layer_spec
from nstkit.recipe.yamlio import dump

LOSS_KEYS = ("name", "weight", "layers", "label")


def _file_digest(value: Any) -> str | None:
    """sha256 of the file ``value`` names, if it names one."""
    if not isinstance(value, str) or not Path(value).is_file():
        return None
    return hashlib.sha256(Path(value).read_bytes()).hexdigest()


@dataclass
class Recipe:
    """A recipe after defaults, ``extends`` and ``--set`` (every key present).

    Attributes:
        data: the resolved recipe, as recorded with each output.
        source: the file it was read from (``"gatys.yaml (built-in)"`` for built-ins).
        chain: every file of the ``extends`` chain, root first.
    """

    data: dict[str, Any]
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
        return int(self.data["optimizer"]["iterations"])

    @cached_property
    def hash(self) -> str:
        """sha256 of everything that changes the result: the recipe without its description
        and ``output.save_every``, plus the bytes of an ``init`` image or a weights file."""
        meaningful = {k: v for k, v in self.data.items() if k != "description"}
        if meaningful.get("precision") == "fp32":  # the default; hashes from before the key
            del meaningful["precision"]
        meaningful["output"] = {k: v for k, v in self.data["output"].items()
                                if k != "save_every"}
        meaningful["files"] = {key: _file_digest(self.data[key] if key == "init"
                                                 else self.data["extractor"].get(key))
                               for key in ("init", "weights")}
        text = json.dumps(meaningful, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def to_yaml(self) -> str:
        """The resolved recipe as YAML."""
        return dump(self.data)

    def stylize_options(self) -> dict[str, Any]:
        """Keyword arguments for :func:`nstkit.stylize` (everything but the images)."""
        data = self.data
        extractor = dict(data["extractor"])
        optimizer = dict(data["optimizer"])
        multiscale = data.get("multiscale")
        return {
            "size": data["size"],
            "style_scale": float(data["style_scale"]),
            "iterations": int(optimizer.pop("iterations")),
            "seed": data["seed"],
            "extractor": extractor.pop("name"),
            "pooling": extractor.pop("pooling", "max"),
            "weights": extractor.pop("weights", None),
            "extractor_options": extractor,
            "losses": [self._loss(spec) for spec in data["losses"]],
            "optimizer": optimizer.pop("name"),
            "optimizer_options": optimizer,
            "init": data["init"],
            "noise_scale": float(data["noise_scale"]),
            "preserve_colour": data["preserve_colour"],
            "multiscale": list(zip(multiscale["scales"], multiscale["iterations"], strict=True))
            if multiscale else None,
            "multiscale_detail": bool(multiscale.get("detail", True)) if multiscale else True,
            "precision": data.get("precision", "fp32"),
        }

    @staticmethod
    def _loss(spec: dict[str, Any]) -> dict[str, Any]:
        options = {k: v for k, v in spec.items() if k not in LOSS_KEYS}
        loss = {"name": spec["name"], "weight": float(spec.get("weight", 1.0)),
                "layers": resolve_layer_spec(spec.get("layers")), **options}
        if "label" in spec:
            loss["label"] = spec["label"]
        return loss
