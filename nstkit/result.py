"""What a stylisation returns."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from nstkit.config import StylizeConfig
from nstkit.image import save_image, to_pil


@dataclass
class StyleResult:
    """The outcome of :func:`nstkit.stylize`.

    Attributes:
        image: ``(B, 3, H, W)`` on the CPU, RGB in ``[0, 1]``.
        history: per loss term (weighted) and ``"total"``, stage after stage: the initial value,
            the value before each later step and the value of the result (``iterations + 1``
            entries for one stage; one more per extra multi-scale stage).
        iterations: optimiser steps taken.
        wall_time: seconds spent optimising (targets included, extractor loading excluded).
        device: the device the optimisation ran on.
        config: the resolved configuration the image was made with.
        stages: ``[scale, steps]`` of each stage run (stages too small for the deepest layer
            are skipped and their steps given to the first one run).
        style_blend: the weight of each style image.
        detail: whether upsampled stages got the content's fine detail back.
    """

    image: torch.Tensor
    history: dict[str, list[float]]
    iterations: int
    wall_time: float
    device: str
    config: StylizeConfig = field(default_factory=StylizeConfig)
    stages: list[list[float | int]] = field(default_factory=list)
    style_blend: list[float] = field(default_factory=lambda: [1.0])
    detail: bool = False

    @property
    def settings(self) -> dict[str, Any]:
        """The resolved configuration as plain data (what a manifest records)."""
        return self.config.model_dump(mode="json")

    @property
    def pil(self) -> Image.Image:
        """The first image of the batch as a PIL image."""
        return to_pil(self.image[0])

    def final_losses(self) -> dict[str, float]:
        return {name: values[-1] for name, values in self.history.items() if values}

    def save(self, path: str | os.PathLike, index: int = 0, **options: Any) -> Path:
        """Write image ``index`` of the batch atomically; the format follows the extension."""
        return save_image(self.image[index], path, **options)
