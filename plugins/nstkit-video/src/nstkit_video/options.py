"""The options of the ``temporal`` loss, as a pydantic model: recipes are checked against it
without importing torch."""

from __future__ import annotations

from nstkit.config import ImageTermOptions


class TemporalOptions(ImageTermOptions):
    """Temporal consistency with the previous frame, warped by optical flow (Ruder et al.
    2016); reads the guides nstkit video hands each frame, zero without them."""
