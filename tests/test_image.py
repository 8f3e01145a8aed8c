"""Image conversions match torchvision's (reading as ``pil_to_tensor``, writing rounded as
``save_image``), which nstkit no longer imports."""

from __future__ import annotations

import torch
from PIL import Image

from nstkit.image import load_image, to_pil


def test_pil_conversions_match_torchvision() -> None:
    from torchvision.transforms.functional import pil_to_tensor, to_pil_image

    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8, generator=generator)
    pil = to_pil_image(pixels)
    assert torch.equal(load_image(pil)[0], pil_to_tensor(pil).float() / 255)
    image = torch.rand(3, 5, 7, generator=generator)
    rounded = image.mul(255).add(0.5).clamp(0, 255).to(torch.uint8)  # torchvision's save_image
    assert torch.equal(pil_to_tensor(to_pil(image)), rounded)
    assert to_pil(torch.full((3, 1, 1), 0.6 / 255)).getpixel((0, 0)) == (1, 1, 1)  # not 0
    assert torch.equal(load_image(to_pil(load_image(pil)[0]))[0], load_image(pil)[0])
    assert to_pil(image).size == (7, 5)
    grey = Image.new("L", (4, 2), 128)
    assert load_image(grey).shape == (1, 3, 2, 4)
