"""The model file: a trained :class:`~nstkit_fast.network.TransformNet` as safetensors, with
what made it as JSON metadata (safetensors metadata maps strings to strings).

Loading never unpickles anything: the header is JSON, the tensors raw bytes. A file is refused
unless its metadata says it is an nstkit-fast model of a known format version, its network
settings are valid, and its tensor names, shapes and dtypes are exactly the network's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nstkit.atomic import write_atomic
from nstkit.errors import NstkitError
from nstkit.runner.manifest import file_sha256
from nstkit_fast.network import NetworkSettings, TransformNet
from nstkit_fast.plugin import SUFFIX

FORMAT = "nstkit-fast"
FORMAT_VERSION = "1"
CHECKPOINT_FORMAT = "nstkit-fast-checkpoint"


class ModelFileError(NstkitError):
    """A model file that cannot be used: unreadable, not safetensors, not an nstkit-fast model,
    or tensors that do not fit the network it declares."""


@dataclass
class FastModel:
    """A trained network and what made it.

    Attributes:
        net: the network, in eval mode, on the CPU.
        recipe: the resolved recipe data it was trained with (as ``nstkit run`` records it).
        recipe_hash: that recipe's hash.
        style: the style image: ``{"name", "sha256", "size"}``.
        training: how it was trained (steps, crop, batch size, learning rate, images...).
        versions: nstkit, nstkit-fast, torch and Python versions at training time.
        path: the file it was read from, if any; ``sha256`` its digest.
    """

    net: TransformNet
    recipe: dict[str, Any]
    recipe_hash: str
    style: dict[str, Any]
    training: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    sha256: str | None = None

    @property
    def settings(self) -> NetworkSettings:
        return self.net.settings

    @property
    def name(self) -> str:
        """The file's stem (``wave`` for ``wave.safetensors``), else ``model``."""
        return self.path.name.removesuffix(SUFFIX) if self.path else "model"

    def metadata(self) -> dict[str, str]:
        """The safetensors metadata: every value a JSON string."""
        values = {"format": FORMAT, "format_version": FORMAT_VERSION,
                  "network": self.settings.as_dict(), "recipe": self.recipe,
                  "recipe_hash": self.recipe_hash, "style": self.style,
                  "training": self.training, "versions": self.versions}
        return {key: value if isinstance(value, str) else json.dumps(value, default=str)
                for key, value in values.items()}


def save_model(model: FastModel, path: str | Path) -> Path:
    """Write ``model`` to ``path`` atomically (readers see the old file or the new one)."""
    from safetensors.torch import save

    tensors = {name: value.detach().cpu().contiguous().float()
               for name, value in model.net.state_dict().items()}
    return write_atomic(path, save(tensors, metadata=model.metadata()))


def _json(metadata: dict[str, str], key: str, kind: type, where: str) -> Any:
    try:
        value = json.loads(metadata[key])
    except (KeyError, json.JSONDecodeError, TypeError):
        raise ModelFileError(f"{where}: metadata {key!r} is missing or not JSON") from None
    if not isinstance(value, kind):
        raise ModelFileError(f"{where}: metadata {key!r} must be a JSON "
                             f"{'object' if kind is dict else kind.__name__}")
    return value


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of a model file, checked and parsed, without reading its tensors.

    Raises:
        ModelFileError: not a safetensors file, or not an nstkit-fast model of this format.
    """
    where = str(path)
    metadata, shapes = read_tensors(path, shapes_only=True, what="safetensors model file",
                                    hint="; an nstkit-fast model is written by `nstkit train`")
    if metadata.get("format") == CHECKPOINT_FORMAT:
        raise ModelFileError(f"{where} is a training checkpoint, not a model: use the model "
                             f"file `nstkit train` wrote beside it (MODEL{SUFFIX})")
    if metadata.get("format") != FORMAT:
        raise ModelFileError(f"{where}: not an nstkit-fast model (metadata format is "
                             f"{metadata.get('format')!r}, expected {FORMAT!r})")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{where}: model format version "
                             f"{metadata.get('format_version')!r}; this nstkit-fast reads "
                             f"version {FORMAT_VERSION}")
    try:
        settings = NetworkSettings.from_dict(_json(metadata, "network", dict, where))
    except ValueError as exc:
        raise ModelFileError(f"{where}: {exc}") from None
    recipe_hash = metadata.get("recipe_hash")
    if not isinstance(recipe_hash, str):
        raise ModelFileError(f"{where}: metadata 'recipe_hash' is missing")
    return {"settings": settings, "recipe": _json(metadata, "recipe", dict, where),
            "recipe_hash": recipe_hash, "style": _json(metadata, "style", dict, where),
            "training": _json(metadata, "training", dict, where),
            "versions": _json(metadata, "versions", dict, where), "shapes": shapes}


def load_model(path: str | Path) -> FastModel:
    """Read a model file written by :func:`save_model`.

    Raises:
        ModelFileError: the file is missing, not safetensors (a pickled ``.pt`` renamed is
            refused before anything in it runs), not an nstkit-fast model, or its tensors'
            names, shapes or dtypes are not those of the network its metadata declares, or
            hold NaN or infinite values.
    """
    where = str(path)
    meta = read_metadata(path)
    net = TransformNet(meta["settings"])
    expected = {name: tuple(value.shape) for name, value in net.state_dict().items()}
    found = {name: shape for name, (shape, _) in meta["shapes"].items()}
    if found != expected:
        missing = sorted(set(expected) - set(found))
        extra = sorted(set(found) - set(expected))
        wrong = sorted(n for n in set(found) & set(expected) if found[n] != expected[n])
        parts = [f"{label}: {', '.join(names[:4])}{' ...' if len(names) > 4 else ''}"
                 for label, names in (("missing", missing), ("unexpected", extra),
                                      ("wrong shape", wrong)) if names]
        raise ModelFileError(f"{where}: the tensors do not fit the declared network "
                             f"{meta['settings'].as_dict()} ({'; '.join(parts)})")
    odd = sorted(name for name, (_, dtype) in meta["shapes"].items() if dtype != "F32")
    if odd:
        raise ModelFileError(f"{where}: tensors must be float32, {odd[0]!r} is not")
    _, tensors = read_tensors(path)
    bad = [name for name, value in tensors.items() if not torch.isfinite(value).all()]
    if bad:
        raise ModelFileError(f"{where}: tensor {bad[0]!r} holds NaN or infinite values")
    net.load_state_dict(tensors, strict=True)
    net.eval().requires_grad_(False)
    return FastModel(net, meta["recipe"], meta["recipe_hash"], meta["style"], meta["training"],
                     meta["versions"], Path(path), file_sha256(Path(path)))


def read_tensors(path: str | Path, *, shapes_only: bool = False,
                 what: str = "safetensors file", hint: str = ""
                 ) -> tuple[dict[str, str], dict[str, Any]]:
    """A safetensors file's metadata, and its tensors (on the CPU) by name, or with
    ``shapes_only`` each tensor's ``(shape, dtype name)`` without reading it. Nothing is
    unpickled: the header is JSON, the tensors raw bytes.

    Args:
        path: the file.
        shapes_only: read the header only.
        what: what the file should be, for the error messages.
        hint: appended to the message of a file that is not safetensors.

    Raises:
        ModelFileError: the file is missing, or not safetensors (truncated, a pickle, ...).
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            names = list(handle.keys())
            if shapes_only:
                slices = {name: handle.get_slice(name) for name in names}
                tensors: dict[str, Any] = {
                    name: (tuple(part.get_shape()), part.get_dtype())
                    for name, part in slices.items()}
            else:
                tensors = {name: handle.get_tensor(name) for name in names}
            return handle.metadata() or {}, tensors
    except FileNotFoundError:
        raise ModelFileError(f"{what} {str(path)!r} does not exist") from None
    except Exception as exc:  # SafetensorError, a header that is not JSON, a pickle
        raise ModelFileError(f"{path} is not a {what} ({_short(exc)}){hint}") from None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
