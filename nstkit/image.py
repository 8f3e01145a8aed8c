"""Reading, resizing and writing images as RGB tensors in ``[0, 1]``.

Results are written 8-bit by Pillow, except TIFF (``tifffile``) and 16-bit PNG (``pypng``):
Pillow cannot write 16-bit RGB. A 16-bit file holds ``round(x * 65535)``. Each writer can embed
the ICC profile and resolution read from the content image by :func:`print_info`.
"""

from __future__ import annotations

import io
import math
import os
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from nstkit.atomic import atomic_file
from nstkit.errors import ImageError

ImageInput = str | os.PathLike | Image.Image | torch.Tensor
SIXTEEN_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")
# Pillow's names of the formats that can hold 16 bits per channel, an ICC profile, a resolution
SIXTEEN_BIT_FORMATS = ("PNG", "TIFF")
ICC_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF")
DPI_FORMATS = ("PNG", "JPEG", "TIFF")  # WebP has no resolution field
ORIENTATION = 0x0112  # EXIF
BITS_PER_SAMPLE, X_RESOLUTION, ICC_TAG = 258, 282, 34675  # TIFF tags
DPI_STEP = 0.0128  # PNG stores pixels per metre: whole dots per inch come back within 0.0127


def load_image(source: ImageInput) -> torch.Tensor:
    """An image as a float tensor ``(B, 3, H, W)``, RGB in ``[0, 1]``.

    Files are EXIF-rotated upright. Every mode becomes RGB: greyscale, palette and CMYK are
    converted, 16-bit greyscale is scaled by ``1/65535``, and transparent pixels (RGBA, LA,
    palette transparency) are composited on white, so alpha is dropped. 16-bit RGB(A) PNG and
    TIFF files are read at full precision (``1/65535``), except a TIFF compressed in a way
    ``tifffile`` decodes only with ``imagecodecs`` (LZW, PackBits, JPEG), which Pillow reads at
    8 bits. A tensor ``(3, H, W)`` or ``(B, 3, H, W)`` is taken as RGB in ``[0, 1]``.

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
    if isinstance(pil, np.ndarray):  # 16-bit RGB, already float (H, W, 3)
        return torch.from_numpy(pil).permute(2, 0, 1).unsqueeze(0).contiguous()
    if pil.mode in SIXTEEN_BIT_MODES:
        grey = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 65535).clamp(0, 1)
        return grey.expand(1, 3, *grey.shape).contiguous()
    rgb = _to_rgb(pil)
    pixels = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8)
    chw = pixels.view(rgb.height, rgb.width, 3).permute(2, 0, 1)
    return chw.unsqueeze(0).float().contiguous() / 255


def _open(path: Path) -> Image.Image | np.ndarray:
    """Open, check the size in the header, then decode and turn upright: a PIL image, or a
    16-bit RGB file as float32 ``(H, W, 3)`` in ``[0, 1]``."""
    try:
        with warnings.catch_warnings():  # the size is checked here, more strictly
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            check_pixels(path, img.size)
            deep = _sixteen_bit_rgb(path, img)
            if deep is not None:
                return deep
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


def _sixteen_bit_rgb(path: Path, img: Image.Image) -> np.ndarray | None:
    """A 16-bit RGB(A) PNG or TIFF, which Pillow decodes at 8 bits, read at full precision:
    float32 ``(H, W, 3)``, alpha composited on white, EXIF-rotated; ``None`` for other files."""
    if img.mode not in ("RGB", "RGBA"):
        return None
    if img.format == "PNG":
        with path.open("rb") as handle:
            header = handle.read(26)  # the signature, then IHDR: the bit depth is byte 24
        pixels = _read_png16(path) if header[24:25] == b"\x10" else None
    elif img.format == "TIFF" and set(img.tag_v2.get(BITS_PER_SAMPLE, ())) == {16}:
        pixels = _read_tiff16(path)
    else:
        return None
    if pixels is None:
        return None
    if pixels.shape[-1] == 4:
        alpha = pixels[..., 3:]
        pixels = pixels[..., :3] * alpha + (1 - alpha)
    upright = _upright(pixels, img.getexif().get(ORIENTATION, 1))
    return np.ascontiguousarray(upright.clip(0, 1), dtype=np.float32)


def _read_png16(path: Path) -> np.ndarray | None:
    import png  # pypng

    _, height, rows, info = png.Reader(filename=str(path)).asDirect()
    if info["planes"] < 3:
        return None
    pixels = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    top = np.float32(2 ** info["bitdepth"] - 1)  # bitdepth: sBIT's, when the file has one
    return pixels.reshape(height, -1, info["planes"]).astype(np.float32) / top


def _read_tiff16(path: Path) -> np.ndarray | None:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            if page.photometric != tifffile.PHOTOMETRIC.RGB or page.dtype != np.uint16:
                return None
            pixels = page.asarray()
            if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE:
                pixels = np.moveaxis(pixels, 0, -1)
    except Exception:  # e.g. LZW without imagecodecs: Pillow reads the file, at 8 bits
        return None
    if pixels.ndim != 3 or pixels.shape[-1] not in (3, 4):
        return None
    return pixels.astype(np.float32) / 65535


def _upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """``(H, W, C)`` turned as :func:`PIL.ImageOps.exif_transpose` turns an image."""
    turns = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
             5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1),
             7: lambda a: np.rot90(a, 2).transpose(1, 0, 2), 8: lambda a: np.rot90(a, 1)}
    return turns[orientation](pixels) if orientation in turns else pixels


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
    """``(3, H, W)`` or ``(1, 3, H, W)`` RGB in ``[0, 1]`` to an 8-bit PIL image,
    ``round(x * 255)`` (as torchvision's ``save_image``; truncating darkens by half a level on
    average)."""
    pixels = _one(image).detach().float().clamp(0, 1).cpu().mul(255).round().byte()
    return Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy())


def to_uint16(image: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` or ``(1, 3, H, W)`` RGB in ``[0, 1]`` to ``round(x * 65535)``,
    ``uint16`` ``(H, W, 3)``."""
    pixels = _one(image).detach().cpu().double().clamp(0, 1).mul(65535).round()
    return pixels.permute(1, 2, 0).numpy().astype(np.uint16)


def _one(image: torch.Tensor) -> torch.Tensor:
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {image.shape[0]}")
        image = image[0]
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"an RGB image must be (3, H, W), got {tuple(image.shape)}")
    return image


@dataclass(frozen=True)
class PrintInfo:
    """What a print workflow needs carried from a content image to its result.

    Attributes:
        icc_profile: the ICC profile's bytes (RGB profiles only); ``None``: sRGB implied.
        dpi: ``(x, y)`` dots per inch; ``None``: no resolution recorded.
    """

    icc_profile: bytes | None = None
    dpi: tuple[float, float] | None = None

    def options(self) -> dict[str, Any]:
        """The keywords of :func:`save_image` that embed what is known."""
        return {key: value for key, value in (("icc_profile", self.icc_profile),
                                              ("dpi", self.dpi)) if value is not None}


def print_info(path: str | os.PathLike) -> PrintInfo:
    """The ICC profile and resolution of an image file, as its result should carry them.

    A profile is kept only when its colour space is RGB (a greyscale or CMYK image becomes RGB,
    so its profile would not fit). The resolution is Pillow's ``dpi``, swapped when EXIF turns
    the image a quarter, and rounded to whole dots per inch when within PNG's step of them
    (300 dpi is 11811 px/m, read back as 299.9994); a TIFF without resolution tags has none.
    Reads the header only.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as img:
            info = dict(img.info)
            orientation = img.getexif().get(ORIENTATION, 1)
            if img.format == "TIFF" and X_RESOLUTION not in img.tag_v2:
                info.pop("dpi", None)  # Pillow reports 1 x 1 dpi then
    icc = info.get("icc_profile") or None
    if icc is not None and icc[16:20] != b"RGB ":
        icc = None
    dpi = _dpi(info.get("dpi"))
    if dpi is not None and orientation in (5, 6, 7, 8):
        dpi = (dpi[1], dpi[0])
    return PrintInfo(bytes(icc) if icc else None, dpi)


def _dpi(value: Any) -> tuple[float, float] | None:
    """``(x, y)`` as positive finite floats, each rounded to a whole number within
    :data:`DPI_STEP` of one; ``None`` for anything else."""
    try:
        x, y = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) and v > 0 for v in (x, y)):
        return None
    return tuple(float(round(v)) if abs(v - round(v)) < DPI_STEP else v for v in (x, y))


def save_image(image: torch.Tensor | Image.Image, path: str | os.PathLike, *,
               bit_depth: int = 8, icc_profile: bytes | None = None,
               dpi: tuple[float, float] | None = None, **options: Any) -> Path:
    """Write an image atomically (temporary file in the same folder, then rename); the format
    follows the extension.

    Args:
        image: ``(3, H, W)`` or ``(1, 3, H, W)`` RGB in ``[0, 1]``, or a PIL image (8-bit).
        bit_depth: 8 (as :func:`to_pil`) or 16 (``round(x * 65535)``; PNG and TIFF only).
        icc_profile: embedded in PNG (``iCCP``), JPEG, WebP and TIFF (tag 34675).
        dpi: ``(x, y)``, recorded in PNG (``pHYs``), JPEG (JFIF) and TIFF; WebP has no field.
        options: Pillow's, e.g. ``quality`` for JPEG and WebP (TIFF and 16-bit PNG take none).

    Raises:
        ValueError: an unknown extension, or 16 bits for a format that has 8.
    """
    path = Path(path)
    kind = Image.registered_extensions().get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"cannot write {path.name}: unknown image file extension")
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
    if bit_depth == 16 and kind not in SIXTEEN_BIT_FORMATS:
        raise ValueError(f"cannot write {path.name} with 16 bits per channel: only PNG and "
                         f"TIFF can ({kind} is 8-bit)")
    if bit_depth == 16 and isinstance(image, Image.Image):
        raise ValueError("16-bit output takes a tensor, not a PIL image")
    meta = {"icc_profile": icc_profile if kind in ICC_FORMATS else None,
            "dpi": _dpi(dpi) if kind in DPI_FORMATS else None}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as handle:
        if kind == "TIFF":
            _write_tiff(handle, _pixels(image, bit_depth), **meta)
        elif bit_depth == 16:
            _write_png16(handle, to_uint16(image), **meta)
        else:
            pil = image if isinstance(image, Image.Image) else to_pil(image)
            pil.save(handle, format=kind, **{k: v for k, v in meta.items() if v is not None},
                     **options)
    return path


def _pixels(image: torch.Tensor | Image.Image, bit_depth: int) -> np.ndarray:
    """``(H, W, 3)`` ``uint8`` or ``uint16``."""
    if bit_depth == 16:
        return to_uint16(image)
    pil = image if isinstance(image, Image.Image) else to_pil(image)
    return np.asarray(pil if pil.mode == "RGB" else pil.convert("RGB"))


def _write_tiff(handle: Any, pixels: np.ndarray, icc_profile: bytes | None,
                dpi: tuple[float, float] | None) -> None:
    """Deflate with the horizontal predictor (read by libtiff, Photoshop, GIMP); the profile
    in InterColorProfile (34675, UNDEFINED); without a resolution, ResolutionUnit says none
    (baseline TIFF requires the tags)."""
    import tifffile

    icc = [(ICC_TAG, 7, len(icc_profile), icc_profile, True)] if icc_profile else []
    buffer = io.BytesIO()  # tifffile wants a named file or a buffer, not a bare descriptor
    tifffile.imwrite(buffer, pixels, photometric="rgb", planarconfig="contig",
                     compression="zlib", predictor=True, metadata=None, extratags=icc,
                     resolution=dpi, resolutionunit="INCH" if dpi else None)
    handle.write(buffer.getbuffer())


def _write_png16(handle: Any, pixels: np.ndarray, icc_profile: bytes | None,
                 dpi: tuple[float, float] | None) -> None:
    """pypng, rows packed big-endian here; its ``pHYs`` for ``dpi``, and an ``iCCP`` chunk
    (zlib-compressed profile) added after its header chunks, before the image data."""
    import png  # pypng

    class Writer(png.Writer):
        def write_preamble(self, outfile: Any) -> None:
            super().write_preamble(outfile)
            if icc_profile:
                png.write_chunk(outfile, b"iCCP",
                                b"ICC Profile\0\0" + zlib.compress(icc_profile))

    height, width, _ = pixels.shape
    density = {} if dpi is None else {  # rounded as Pillow rounds it
        "x_pixels_per_unit": int(dpi[0] / 0.0254 + 0.5),
        "y_pixels_per_unit": int(dpi[1] / 0.0254 + 0.5), "unit_is_meter": True}
    writer = Writer(width, height, greyscale=False, bitdepth=16, **density)
    writer.write_packed(handle, (row.tobytes() for row in
                                 pixels.astype(">u2").reshape(height, width * 3)))
