"""What the nstkit-fast tests share: a recipe on nstkit's tiny stand-in extractor (``tiny``,
registered by :func:`nstkit.testing.add_tiny_extractor`), generated photos, and a trained tiny
model. Not a test module (no ``test_`` prefix)."""

from __future__ import annotations

from pathlib import Path

import torch

from nstkit.image import save_image
from nstkit.recipe import Recipe, load_recipe
from nstkit.testing import tiny_images

RECIPE = """\
# tiny: gatys's terms on a tiny stand-in extractor, for tests
version: 1
extends: gatys
extractor: {name: tiny}
size: 64
seed: 0
losses:
  - {name: content, weight: 1.0, layers: [relu2_2]}
  - {name: gram, weight: 100.0, layers: [relu1_1, relu2_1]}
optimizer: {name: lbfgs, iterations: 3}
"""


def tiny_recipe(folder: Path) -> Recipe:
    path = folder / "tiny.yaml"
    path.write_text(RECIPE)
    return load_recipe(path)


def write_photos(folder: Path, count: int = 3, size: int = 64) -> list[Path]:
    """``count`` generated photos (flips and colour swaps of the tiny images), as PNGs."""
    images = tiny_images(size)
    sources = [images.content, images.styles[1], images.content.flip(-1).roll(1, 1)]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        image = sources[index % len(sources)]
        if index >= len(sources):
            image = image.flip(-2)
        path = folder / f"photo{index}.png"
        save_image(image[0], path)
        paths.append(path)
    return paths


def write_style(path: Path, size: int = 64) -> Path:
    save_image(tiny_images(size).style[0], path)
    return path


def small_settings(**changes):
    from nstkit_fast.network import NetworkSettings
    from nstkit_fast.training import TrainSettings

    values = {"steps": 6, "batch_size": 2, "crop": 32, "size": 64, "lr": 5e-3, "seed": 0,
              "network": NetworkSettings(4, 1), "checkpoint_every": 3, "device": "cpu"}
    return TrainSettings(**(values | changes))


def state(path: Path) -> dict[str, torch.Tensor]:
    from nstkit_fast.modelfile import load_model

    return load_model(path).net.state_dict()
