"""nstkit-mrf: the MRF (neural patch matching) style loss of Li & Wand 2016 for nstkit.

Installed, it registers the loss term ``mrf``:
``nstkit.stylize(..., losses=[{"name": "content"}, {"name": "mrf", "weight": 1.0}])``.
"""

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
