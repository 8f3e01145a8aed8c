"""Clips whose motion is known exactly, for tests and benchmarks: a crop window panning over an
image by a whole number of pixels per frame, and the true flow and validity mask of that pan.

Frame ``t`` (from 0) is the window at ``(top + t·dy, left + t·dx)``, so frame ``t`` at ``x``
is frame ``t - 1`` at ``x + (dx, dy)``: the backward flow is ``(dx, dy)`` everywhere, valid
where ``x + (dx, dy)`` is inside the frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from nstkit.image import save_image


def panning_clip(image: torch.Tensor, frames: int, size: tuple[int, int],
                 step: tuple[int, int] = (1, 2), start: tuple[int, int] = (0, 0)
                 ) -> list[torch.Tensor]:
    """``frames`` crops of ``image`` of ``size = (h, w)``, moving ``step = (dy, dx)`` pixels
    per frame from ``start = (top, left)``.

    Shape:
        - image: ``(1, 3, H, W)``, RGB in ``[0, 1]``, large enough for the whole pan.
        - Output: ``frames`` tensors ``(1, 3, h, w)``.
    """
    (h, w), (dy, dx), (top, left) = size, step, start
    bottom = top + (frames - 1) * dy + h
    right = left + (frames - 1) * dx + w
    if min(top + (frames - 1) * dy, left + (frames - 1) * dx) < 0 \
            or bottom > image.shape[-2] or right > image.shape[-1]:
        raise ValueError(f"a {frames}-frame pan of {h}x{w} by {step} from {start} needs "
                         f"rows up to {bottom} and columns up to {right}; the image is "
                         f"{tuple(image.shape[-2:])}")
    return [image[..., top + t * dy: top + t * dy + h, left + t * dx: left + t * dx + w].clone()
            for t in range(frames)]


def pan_flow(size: tuple[int, int], step: tuple[int, int] = (1, 2)
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """The true backward flow of a pan by ``step = (dy, dx)`` per frame, and where it is valid.

    Returns:
        ``flow`` ``(1, 2, h, w)`` (``dx`` in channel 0, ``dy`` in 1) and ``mask``
        ``(1, 1, h, w)``, 1 where ``x + (dx, dy)`` is inside the frame.
    """
    (h, w), (dy, dx) = size, step
    flow = torch.empty(1, 2, h, w)
    flow[:, 0], flow[:, 1] = float(dx), float(dy)
    mask = torch.zeros(1, 1, h, w)
    mask[..., max(0, -dy): h - max(0, dy), max(0, -dx): w - max(0, dx)] = 1
    return flow, mask


def write_frames(frames: Sequence[torch.Tensor], folder: Path) -> list[Path]:
    """Save frames as ``folder/frame_0001.png``... (8-bit PNG, lossless); returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    return [save_image(frame, folder / f"frame_{index:04d}.png")
            for index, frame in enumerate(frames, 1)]


def write_clip(frames: Sequence[torch.Tensor], path: Path, fps: int = 12, *,
               codec: str = "libx264", audio: bool = False) -> Path:
    """Encode frames as a video file (H.264 by default, near-lossless ``crf 0``), with a quiet
    440 Hz AAC tone as its audio if ``audio``. The container follows the suffix."""
    import av

    with av.open(str(path), mode="w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[-2:]
        stream.pix_fmt = "yuv444p" if codec == "libx264" else "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "0"}
        sound = out.add_stream("aac", rate=44100) if audio else None
        for frame in frames:
            pixels = (frame[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if sound is not None:
            _tone(out, sound, Fraction(len(frames), fps))
    return path


def _tone(out: object, stream: object, seconds: Fraction) -> None:
    import av

    rate = 44100
    total = int(rate * seconds)
    chunk = 1024
    for start in range(0, total, chunk):
        t = np.arange(start, min(start + chunk, total)) / rate
        samples = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        for packet in stream.encode(frame):  # type: ignore[attr-defined]
            out.mux(packet)  # type: ignore[attr-defined]
    for packet in stream.encode():  # type: ignore[attr-defined]
        out.mux(packet)  # type: ignore[attr-defined]
