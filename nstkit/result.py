"""What a stylisation returns."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

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
        settings: the resolved options the image was made with.
    """

    image: torch.Tensor
    history: dict[str, list[float]]
    iterations: int
    wall_time: float
    device: str
    settings: dict = field(default_factory=dict)

    @property
    def pil(self) -> Image.Image:
        """The first image of the batch as a PIL image."""
        return to_pil(self.image[0])

    def pil_images(self) -> list[Image.Image]:
        return [to_pil(img) for img in self.image]

    def final_losses(self) -> dict[str, float]:
        return {name: values[-1] for name, values in self.history.items() if values}

    def save(self, path: str | os.PathLike, index: int = 0, **options) -> Path:
        """Write image ``index`` of the batch atomically; the format follows the extension."""
        return save_image(self.image[index], path, **options)
