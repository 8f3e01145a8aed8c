"""nstkit-mrf: the MRF (neural patch matching) style loss of Li & Wand 2016 for nstkit.

Installed, it registers the loss term ``mrf``:
``nstkit.stylize(..., losses=[{"name": "content"}, {"name": "mrf", "weight": 1.0}])``.

Importing the package imports no torch (nstkit loads :mod:`nstkit_mrf.plugin` at start-up);
the names below load :mod:`nstkit_mrf.loss` on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nstkit_mrf.loss import (
        MRF_LAYERS,
        MRFLoss,
        extract_patches,
        match_patches,
        mrf_loss,
        style_patches,
    )

__version__ = "0.1.0"
__all__ = ["MRF_LAYERS", "MRFLoss", "extract_patches", "match_patches", "mrf_loss",
           "style_patches"]


def __getattr__(name: str) -> Any:
    """The loss module's public names, imported (with torch) when first asked for."""
    if name in __all__:
        from nstkit_mrf import loss

        return getattr(loss, name)
    raise AttributeError(f"module 'nstkit_mrf' has no attribute {name!r}")
