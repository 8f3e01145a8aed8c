"""Region masks: colour-coded PNGs whose colours name regions (``regions:`` in a recipe).

A mask is an image the shape of its photo in which every pixel has one of the colours the
recipe's ``regions`` maps (``#rrggbb``, matched exactly: save masks without antialiasing). The
batch runner finds a photo's mask by name (:func:`find_mask`); :func:`decode_mask` turns it into
one weight map per colour.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from nstkit.errors import NstkitError
from nstkit.image import ImageInput, load_image

MASK_SUFFIX = ".mask.png"
COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
ASPECT_TOLERANCE = 0.01
"""A mask whose aspect ratio is within 1 % of its photo's (and whose size differs) is resized
to the photo, nearest neighbour, with a warning; beyond that it is an error."""


class MaskError(NstkitError, ValueError):
    """A mask that cannot be used for its photo: unreadable, the wrong shape, or holding
    colours the recipe's ``regions`` does not map."""


def parse_colour(text: str) -> tuple[int, int, int]:
    """``"#ff8000"`` -> ``(255, 128, 0)``.

    Raises:
        ValueError: not ``#rrggbb``.
    """
    if not isinstance(text, str) or not COLOUR.match(text):
        raise ValueError(f"a region colour must be #rrggbb (hex), got {text!r}")
    return int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16)


def colour_name(rgb: Sequence[int]) -> str:
    """``(255, 128, 0)`` -> ``"#ff8000"``."""
    return "#" + "".join(f"{int(c):02x}" for c in rgb)


def is_mask_file(path: Path) -> bool:
    """Whether ``path`` is named as a mask (``*.mask.png``): never a content image."""
    return path.name.lower().endswith(MASK_SUFFIX)


def find_mask(content: Path, folder: Path | None = None) -> Path | None:
    """The mask of photo ``content``: ``<folder>/<stem>.mask.png`` or ``<folder>/<stem>.png``
    when a masks folder is given, else (or when it has none) ``<stem>.mask.png`` beside the
    photo; ``None`` when there is none (the photo runs unmasked)."""
    stem = content.stem
    candidates = [folder / f"{stem}{MASK_SUFFIX}", folder / f"{stem}.png"] if folder else []
    candidates.append(content.with_name(f"{stem}{MASK_SUFFIX}"))
    for candidate in candidates:
        if candidate.is_file() and candidate.resolve() != content.resolve():
            return candidate
    return None


def mask_pixels(mask: ImageInput) -> torch.Tensor:
    """A mask as ``(H, W, 3)`` uint8 colours (a tensor ``(1, 3, H, W)`` in ``[0, 1]`` is
    rounded to 8 bits).

    Raises:
        MaskError: the file is missing or not an image.
    """
    try:
        image = load_image(mask)
    except (NstkitError, ValueError, OSError) as exc:
        raise MaskError(f"mask {_label(mask)}is unreadable: {exc}") from None
    return (image[0] * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()


def decode_mask(mask: ImageInput, colours: Sequence[str], size: tuple[int, int]
                ) -> tuple[torch.Tensor, list[str]]:
    """One weight map per colour of ``colours``, at ``size``, from a colour-coded mask.

    Colours are matched exactly (8 bits per channel). A mask of another size but the same
    aspect ratio (within :data:`ASPECT_TOLERANCE`) is resized to ``size`` nearest neighbour
    (colour codes do not blend), with a warning.

    Shape:
        - Output: ``(R, 1, H, W)`` float32, each pixel 1 in the map of its colour, 0 elsewhere
          (the maps add up to 1); ``R = len(colours)``, ``(H, W) = size``.

    Returns:
        The maps and the warnings (a resized mask).

    Raises:
        MaskError: unreadable, another aspect ratio, or colours not in ``colours`` (each found
            named with its share of the pixels).
    """
    pixels = mask_pixels(mask)
    warnings: list[str] = []
    height, width = pixels.shape[:2]
    if (height, width) != tuple(size):
        ratio, wanted = width / height, size[1] / size[0]
        if abs(ratio - wanted) > ASPECT_TOLERANCE * wanted:
            raise MaskError(f"mask {_label(mask)}is {width}x{height} px, its photo "
                            f"{size[1]}x{size[0]}: the shapes differ; make the mask at the "
                            f"photo's size")
        warnings.append(f"mask {width}x{height} px resized to the photo's {size[1]}x{size[0]} "
                        f"(nearest neighbour)")
        pixels = F.interpolate(pixels.permute(2, 0, 1)[None].float(), size=tuple(size),
                               mode="nearest-exact")[0].permute(1, 2, 0).to(torch.uint8)
    codes = (pixels[..., 0].long() << 16) | (pixels[..., 1].long() << 8) | pixels[..., 2].long()
    wanted_codes = []
    for colour in colours:
        r, g, b = parse_colour(colour)
        wanted_codes.append((r << 16) | (g << 8) | b)
    found, counts = torch.unique(codes, return_counts=True)
    unknown = [(int(code), int(count)) for code, count in zip(found, counts, strict=True)
               if int(code) not in wanted_codes]
    if unknown:
        unknown.sort(key=lambda item: -item[1])
        total = codes.numel()
        shown = ", ".join(f"{colour_name(((c >> 16) & 255, (c >> 8) & 255, c & 255))} "
                          f"({100 * n / total:.3g} %)" for c, n in unknown[:8])
        more = f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
        raise MaskError(f"mask {_label(mask)}has colours that regions does not map: "
                        f"{shown}{more}; regions maps {', '.join(colours) or 'nothing'}. Map "
                        f"them (null keeps the content) or repaint the mask (no antialiasing)")
    maps = torch.stack([(codes == code).float() for code in wanted_codes])
    return maps.unsqueeze(1), warnings


def _label(mask: ImageInput) -> str:
    return f"{str(mask)!r} " if isinstance(mask, (str, Path)) else ""
