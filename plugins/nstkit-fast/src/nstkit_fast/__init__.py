"""nstkit-fast: fast (feed-forward) style transfer for nstkit (Johnson, Alahi & Fei-Fei 2016;
Ulyanov et al. 2016), trained with any recipe's loss terms.

Installed, it adds the commands ``nstkit train RECIPE --style S --content PHOTOS --out MODEL``
and ``nstkit apply MODEL --content DIR --out OUT``, and lets ``nstkit compare`` take a model
file next to recipes. Importing the package imports no torch (nstkit loads
:mod:`nstkit_fast.plugin` at start-up); the names below load their module on first access.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nstkit_fast.inference import stylise
    from nstkit_fast.modelfile import FastModel, ModelFileError, load_model, save_model
    from nstkit_fast.network import NetworkSettings, TransformNet
    from nstkit_fast.training import TrainSettings, train

__version__ = "0.1.0"
_WHERE = {"stylise": "inference", "FastModel": "modelfile", "ModelFileError": "modelfile",
          "load_model": "modelfile", "save_model": "modelfile", "NetworkSettings": "network",
          "TransformNet": "network", "TrainSettings": "training", "train": "training"}
__all__ = ["FastModel", "ModelFileError", "NetworkSettings", "TrainSettings", "TransformNet",
           "load_model", "save_model", "stylise", "train"]


def __getattr__(name: str) -> Any:
    """The public names, imported (with torch) when first asked for."""
    if name in _WHERE:
        return getattr(import_module(f"nstkit_fast.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'nstkit_fast' has no attribute {name!r}")
