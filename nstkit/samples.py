"""The images nstkit ships (``nstkit/data/samples``): where they are, and small copies of them
as files for tests (:func:`sample_images`). Sources and licences: ``SOURCES.md`` there."""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

from PIL import Image, ImageOps


def samples_dir() -> Path:
    """The folder of sample images bundled with the package (``content/``, ``style/``)."""
    return Path(str(resources.files("nstkit") / "data" / "samples"))


def _sample(name: str) -> Image.Image:
    """``nstkit/data/samples/NAME`` (as shipped with the package), RGB."""
    source = resources.files("nstkit") / "data" / "samples" / name
    with source.open("rb") as handle, Image.open(handle) as image:
        return image.convert("RGB")


def _painting() -> Image.Image:
    """The Starry Night without the black frame and light border of the shipped scan."""
    image = _sample("style/starry_night.jpg")
    return image.crop((8, 8, image.width - 8, image.height - 8))


def _golden_sky(painting: Image.Image) -> Image.Image:
    """The painting's sky (its upper-right two thirds: moon, stars and swirls, no cypress),
    mirrored, with every hue turned half a circle: gold swirls and a violet moon."""
    w, h = painting.size
    sky = ImageOps.mirror(painting.crop((w // 3, 0, w, 2 * h // 3)))
    hue, saturation, value = sky.convert("HSV").split()
    turned = hue.point(lambda x: (x + 128) % 256)
    return Image.merge("HSV", (turned, saturation, value)).convert("RGB")


def _longest_side(image: Image.Image, size: int) -> tuple[int, int]:
    """``(width, height)`` of ``image`` scaled so its longest side is ``size``; halves round up."""
    scale = size / max(image.size)
    width, height = (max(1, math.floor(side * scale + 0.5)) for side in image.size)
    return width, height


def sample_images(folder: Path, size: int = 64) -> Path:
    """Write small real images to ``folder/content/`` and ``folder/style/`` and return ``folder``.

    For tests that need image *files* (``nstkit run``, loading, judged distances on real
    pictures). The pictures are made, at call time, from the three images nstkit ships in
    ``nstkit/data/samples/`` (256 px JPEGs; sources and licences, all CC0 or public domain,
    are in ``nstkit/data/samples/SOURCES.md``), resized with Pillow's Lanczos filter so that
    the longest side is ``size`` (a half pixel rounds up), and saved as RGB PNGs:

    - ``content/chelsea.png``: a cat's face (``content/chelsea.jpg``), landscape, about two
      thirds as high as wide: 64 x 43 (width x height) at ``size=64``, 32 x 21 at 32.
    - ``content/coffee.png``: a cup of coffee on a wooden table (``content/coffee.jpg``),
      resized to exactly ``chelsea.png``'s shape (their aspects differ by 0.6 %), so the two
      contents batch together.
    - ``style/starry_night.png``: van Gogh's *The Starry Night* (``style/starry_night.jpg``)
      without the scan's black frame: 64 x 50 at ``size=64``.
    - ``style/starry_night_gold.png``: the painting's sky (its upper-right two thirds: moon,
      stars and swirls, no cypress), mirrored, every hue turned by 180 degrees: gold swirls
      and a violet moon, so its colours and Gram statistics differ from
      ``starry_night.png``'s; 64 x 50 at ``size=64``.

    Sorted, the files give the jobs ``chelsea`` before ``coffee`` and ``starry_night`` before
    ``starry_night_gold``. The output is deterministic for a given Pillow version.

    Args:
        folder: where to write (created if missing; existing files of these names are
            replaced).
        size: the longest side in pixels (at least 8).

    Returns:
        ``folder``.
    """
    if size < 8:
        raise ValueError(f"size must be at least 8, got {size}")
    chelsea, painting = _sample("content/chelsea.jpg"), _painting()
    content = _longest_side(chelsea, size)
    images = {
        "content/chelsea.png": (chelsea, content),
        "content/coffee.png": (_sample("content/coffee.jpg"), content),
        "style/starry_night.png": (painting, _longest_side(painting, size)),
        "style/starry_night_gold.png": (_golden_sky(painting), None),
    }
    for name, (image, shape) in images.items():
        path = Path(folder) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        resized = image.resize(shape or _longest_side(image, size), Image.Resampling.LANCZOS)
        resized.save(path, "PNG")
    return Path(folder)
