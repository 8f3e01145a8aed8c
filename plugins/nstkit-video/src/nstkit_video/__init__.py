"""nstkit-video: temporally consistent stylisation of clips and frame folders (Ruder,
Dosovitskiy & Brox 2016) for nstkit.

Installed, it adds the command ``nstkit video RECIPE --input CLIP --style S --out OUT`` and the
loss term ``temporal``. Importing the package imports no torch (nstkit loads
:mod:`nstkit_video.plugin` at start-up); the names below load their module on first access.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nstkit_video.clip import VideoSettings, stylise_video
    from nstkit_video.flow import (
        estimate_flow,
        flow_error,
        occlusion_mask,
        warp,
        warping_error,
    )
    from nstkit_video.loss import TemporalLoss, temporal_loss

__version__ = "0.1.0"
_WHERE = {"VideoSettings": "clip", "stylise_video": "clip", "estimate_flow": "flow",
          "flow_error": "flow", "occlusion_mask": "flow", "warp": "flow",
          "warping_error": "flow", "TemporalLoss": "loss", "temporal_loss": "loss"}
__all__ = ["TemporalLoss", "VideoSettings", "estimate_flow", "flow_error", "occlusion_mask",
           "stylise_video", "temporal_loss", "warp", "warping_error"]


def __getattr__(name: str) -> Any:
    """The public names, imported (with torch) when first asked for."""
    if name in _WHERE:
        return getattr(import_module(f"nstkit_video.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'nstkit_video' has no attribute {name!r}")
