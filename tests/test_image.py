"""Image conversions match torchvision's, which nstkit no longer imports."""

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
    assert to_pil(image).tobytes() == to_pil_image(image).tobytes()
    assert to_pil(image).size == (7, 5)
    grey = Image.new("L", (4, 2), 128)
    assert load_image(grey).shape == (1, 3, 2, 4)
