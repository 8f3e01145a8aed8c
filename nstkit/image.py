"""Reading, resizing and writing images as RGB tensors in ``[0, 1]``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torchvision.transforms.functional import pil_to_tensor, to_pil_image

ImageInput = str | os.PathLike | Image.Image | torch.Tensor


def load_image(source: ImageInput) -> torch.Tensor:
    """An image as a float tensor ``(B, 3, H, W)``, RGB in ``[0, 1]``.

    Files and PIL images are EXIF-rotated upright and converted to RGB (alpha composited on
    white); a tensor ``(3, H, W)`` or ``(B, 3, H, W)`` is taken as RGB in ``[0, 1]``.
    """
    if isinstance(source, torch.Tensor):
        tensor = source.detach().float()
        tensor = tensor.unsqueeze(0) if tensor.dim() == 3 else tensor
        if tensor.dim() != 4 or tensor.shape[1] != 3:
            raise ValueError(f"image tensors must be (3, H, W) or (B, 3, H, W), "
                             f"got {tuple(source.shape)}")
        return tensor.clamp(0, 1)
    pil = source if isinstance(source, Image.Image) else _open(Path(source))
    return pil_to_tensor(_to_rgb(pil)).unsqueeze(0).float().contiguous() / 255


def _open(path: Path) -> Image.Image:
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        img.load()
        return img


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def resize_longest(image: torch.Tensor, size: int | None) -> torch.Tensor:
    """Resize ``(B, 3, H, W)`` so its longest side is ``size`` (antialiased bicubic)."""
    if size is None:
        return image
    h, w = image.shape[-2:]
    scale = size / max(h, w)
    shape = (max(1, round(h * scale)), max(1, round(w * scale)))
    if shape == (h, w):
        return image
    resized = F.interpolate(image, size=shape, mode="bicubic", antialias=True, align_corners=False)
    return resized.clamp(0, 1)


def resize_to(image: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Resize ``(B, 3, H, W)`` to exactly ``shape = (H', W')``."""
    if tuple(image.shape[-2:]) == tuple(shape):
        return image
    resized = F.interpolate(image, size=shape, mode="bicubic", antialias=True, align_corners=False)
    return resized.clamp(0, 1)


def to_pil(image: torch.Tensor) -> Image.Image:
    """``(3, H, W)`` or ``(1, 3, H, W)`` RGB in ``[0, 1]`` to an 8-bit PIL image."""
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError(f"to_pil takes one image, got a batch of {image.shape[0]}")
        image = image[0]
    return to_pil_image(image.detach().float().clamp(0, 1).cpu())


def save_image(image: torch.Tensor | Image.Image, path: str | os.PathLike, **options) -> Path:
    """Write an image atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    pil = image if isinstance(image, Image.Image) else to_pil(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            pil.save(handle, format=Image.registered_extensions().get(path.suffix.lower()),
                     **options)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
