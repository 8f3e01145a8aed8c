"""Which jobs a run has: every content image with every style image, one output name each."""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nstkit.errors import NstkitError
from nstkit.masks import is_mask_file

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
_UNSAFE = re.compile(r"[^\w.+-]+")


@dataclass(frozen=True)
class Job:
    """One content image stylised with one style image.

    Attributes:
        content, style: the input files.
        output: the output file name, relative to the output folder (never a path outside it).
    """

    content: Path
    style: Path
    output: str


def find_images(path: Path, recursive: bool = False, what: str = "input",
                exclude: Path | None = None) -> list[Path]:
    """``path`` itself if it is a file, else the images in the folder, sorted by path.

    Files under ``exclude`` (the output folder) are never inputs, nor are region masks
    (``*.mask.png``, :func:`nstkit.masks.is_mask_file`) in a folder.

    Raises:
        NstkitError: the path does not exist, or the folder holds no images.
    """
    if path.is_file():
        return [path]
    if not path.exists():
        raise NstkitError(f"{what} path {str(path)!r} does not exist")
    if not path.is_dir():
        raise NstkitError(f"{what} path {str(path)!r} is neither a file nor a folder")
    found = path.rglob("*") if recursive else path.iterdir()
    skip = exclude.resolve() if exclude is not None else None
    images = sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                    and not p.name.startswith(".") and not is_mask_file(p)
                    and (skip is None or not p.resolve().is_relative_to(skip)))
    if not images:
        hint = "" if recursive else " (add --recursive to search sub-folders)"
        raise NstkitError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {what} folder "
                          f"{str(path)!r}{hint}")
    return images


def safe_stem(path: Path) -> str:
    """A file-name-safe stem: path separators and odd characters become ``_``."""
    stem = _UNSAFE.sub("_", path.stem).strip("._") or "image"
    return stem[:80]


def plan_jobs(contents: Sequence[Path], styles: Sequence[Path], recipe: str,
              suffix: str) -> list[Job]:
    """Every content x every style, named ``<content>__<style>__<recipe>.<suffix>``.

    Names that would collide (equal ignoring case, e.g. ``a.jpg`` and ``a.png``, or the same
    name in two sub-folders) get a short hash of both input paths, so nothing is overwritten.
    """
    tag = _UNSAFE.sub("_", recipe).strip("._") or "recipe"
    jobs = [(c, s, f"{safe_stem(c)}__{safe_stem(s)}__{tag}") for c in contents for s in styles]
    groups: dict[str, int] = defaultdict(int)
    for _, _, name in jobs:
        groups[name.lower()] += 1
    planned = []
    for content, style, name in jobs:
        if groups[name.lower()] > 1:
            digest = hashlib.sha256(f"{content}\0{style}".encode()).hexdigest()[:8]
            name = f"{name}-{digest}"
        planned.append(Job(content, style, f"{name}.{suffix}"))
    return planned


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/8"`` -> ``(2, 8)``: shard index ``I`` (0-based) of ``N``."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 0 <= int(match[1]) < int(match[2]):
        raise NstkitError(f"--shard must be I/N with 0 <= I < N (e.g. 0/4), got {text!r}")
    return int(match[1]), int(match[2])


def select_shard(jobs: Sequence[Job], index: int, count: int) -> list[Job]:
    """Shard ``index`` of ``count``: every ``count``-th job of the sorted plan, from ``index``.

    The shards of one plan are disjoint and together cover every job.
    """
    ordered = sorted(jobs, key=lambda job: job.output)
    return ordered[index::count]
