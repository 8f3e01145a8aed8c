"""Reading, resizing and writing images as RGB tensors in ``[0, 1]``."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from nstkit.atomic import atomic_file
from nstkit.errors import ImageError

ImageInput = str | os.PathLike | Image.Image | torch.Tensor
SIXTEEN_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")


def load_image(source: ImageInput) -> torch.Tensor:
    """An image as a float tensor ``(B, 3, H, W)``, RGB in ``[0, 1]``.

    Files are EXIF-rotated upright. Every mode becomes RGB: greyscale, palette and CMYK are
    converted, 16-bit greyscale is scaled by ``1/65535``, and transparent pixels (RGBA, LA,
    palette transparency) are composited on white, so alpha is dropped. A tensor
    ``(3, H, W)`` or ``(B, 3, H, W)`` is taken as RGB in ``[0, 1]``.

    Raises:
        ImageError: naming the file, when it is missing, not an image, truncated or damaged,
            or larger than ``PIL.Image.MAX_IMAGE_PIXELS`` (refused before decoding).
    """
    if isinstance(source, torch.Tensor):
        tensor = source.detach().float()
        tensor = tensor.unsqueeze(0) if tensor.dim() == 3 else tensor
        if tensor.dim() != 4 or tensor.shape[1] != 3:
            raise ValueError(f"image tensors must be (3, H, W) or (B, 3, H, W), "
                             f"got {tuple(source.shape)}")
        return tensor.clamp(0, 1)
    pil = source if isinstance(source, Image.Image) else _open(Path(source))
    if pil.mode in SIXTEEN_BIT_MODES:
        grey = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 65535).clamp(0, 1)
        return grey.expand(1, 3, *grey.shape).contiguous()
    rgb = _to_rgb(pil)
    pixels = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8)
    chw = pixels.view(rgb.height, rgb.width, 3).permute(2, 0, 1)
    return chw.unsqueeze(0).float().contiguous() / 255


def _open(path: Path) -> Image.Image:
    """Open, check the size in the header, then decode and turn upright."""
    try:
        with warnings.catch_warnings():  # the size is checked here, more strictly
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            check_pixels(path, img.size)
            img = ImageOps.exif_transpose(img)
            img.load()
            return img
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"refused image {path}: {exc}") from None
    except UnidentifiedImageError:
        raise ImageError(f"cannot read image {path}: not an image, or a format Pillow cannot "
                         f"read (UnidentifiedImageError)") from None
    except FileNotFoundError:
        raise ImageError(f"cannot read image {path}: no such file") from None
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, struct.error...
        raise ImageError(f"cannot read image {path}: truncated or damaged "
                         f"({type(exc).__name__}: {exc})") from None


def check_pixels(path: Path, size: tuple[int, int]) -> None:
    """Refuse, before decoding, an image with more pixels than ``PIL.Image.MAX_IMAGE_PIXELS``.

    A small file can declare a huge image (a decompression bomb); Pillow only warns below
    twice its limit. Raise ``PIL.Image.MAX_IMAGE_PIXELS`` to allow larger images.
    """
    limit = Image.MAX_IMAGE_PIXELS
    width, height = size
    if limit is not None and width * height > limit:
        raise ImageError(f"refused image {path}: {width}x{height} px is "
                         f"{width * height / 1e6:.1f} megapixels, over the limit of "
                         f"{limit / 1e6:.1f} (PIL.Image.MAX_IMAGE_PIXELS); a decompression "
                         f"bomb? Decoding it would need about "
                         f"{width * height * 16 / 2**30:.1f} GiB")


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
    pixels = image.detach().float().clamp(0, 1).cpu().mul(255).byte()  # as torchvision's
    return Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy())


def save_image(image: torch.Tensor | Image.Image, path: str | os.PathLike, **options) -> Path:
    """Write an image atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    pil = image if isinstance(image, Image.Image) else to_pil(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as handle:
        pil.save(handle, format=Image.registered_extensions().get(path.suffix.lower()),
                 **options)
    return path
