"""Reading clips (PyAV) and folders of frames, and encoding the stylised frames as a video.

Every problem with an input is a :class:`VideoError` naming the input and what is wrong, so
a batch records it for that video and goes on with the others.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from nstkit.atomic import atomic_file
from nstkit.errors import ImageError, NstkitError
from nstkit.image import ORIENTATION as EXIF_ORIENTATION
from nstkit.image import load_image
from nstkit.runner.plan import IMAGE_SUFFIXES

DEFAULT_FPS = Fraction(25)


class VideoError(NstkitError):
    """An input clip or frame folder that cannot be used (the message names it)."""


@dataclass
class Source:
    """One input: a video file or a folder of frames, probed.

    Attributes:
        path: the file or folder.
        kind: ``"video"`` or ``"frames"``.
        fps: frames per second (a folder's is given, or :data:`DEFAULT_FPS`).
        size: ``(H, W)`` of the frames.
        count: the number of frames if known (a folder's always; a container's when it says).
        audio: whether the clip has an audio stream (copied into the output video).
        files: a folder's frame files, in order.
    """

    path: Path
    kind: str
    fps: Fraction
    size: tuple[int, int]
    count: int | None
    audio: bool = False
    files: list[Path] = field(default_factory=list)

    def frames(self) -> Iterator[np.ndarray]:
        """Each frame in order, ``(H, W, 3)`` uint8 RGB.

        Raises:
            VideoError: a frame cannot be decoded (a truncated or damaged file), or has
                another size than the first.
        """
        if self.kind == "frames":
            yield from self._folder_frames()
        else:
            yield from _decode(self.path, self.size)

    def _folder_frames(self) -> Iterator[np.ndarray]:
        for index, path in enumerate(self.files, 1):
            try:  # nstkit's reader: EXIF-upright, any mode to RGB, 16 bits scaled
                image = load_image(path)
            except ImageError as exc:
                raise VideoError(f"{self.path}: frame {index} ({path.name}) cannot be read: "
                                 f"{exc}") from None
            pixels = (image[0].permute(1, 2, 0) * 255).round().byte().numpy()
            if pixels.shape[:2] != self.size:
                raise VideoError(_size_message(self.path, path, index, pixels.shape[:2],
                                               self.size))
            yield pixels


def frame_sha256(pixels: np.ndarray) -> str:
    """sha256 of a decoded frame's pixels (and shape), as hex."""
    digest = hashlib.sha256(repr(pixels.shape).encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()


def input_sha256(path: Path) -> str:
    """sha256 of a clip's bytes, or of a folder's frame names and bytes (in order)."""
    from nstkit.runner.manifest import file_sha256

    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for frame in _frame_files(path):
        digest.update(f"{frame.name}\0{file_sha256(frame)}\n".encode())
    return digest.hexdigest()


def _frame_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in IMAGE_SUFFIXES)


def _size_message(source: Path, frame: Path, index: int, got: tuple[int, ...],
                  want: tuple[int, int]) -> str:
    return (f"{source}: frames of different sizes: frame {index} ({frame.name}) is "
            f"{got[1]}x{got[0]}, the first is {want[1]}x{want[0]} (width x height); resize "
            f"them to one size")


def open_source(path: Path, fps: float | None = None) -> Source:
    """Probe a clip or a folder of frames: it exists, holds frames of one size, and (a clip)
    has a video stream nstkit can decode, whose first frame decodes.

    Args:
        fps: a folder's frame rate (default 25); ignored for a clip, which has its own.

    Raises:
        VideoError: naming the input: missing, empty, unreadable, truncated, no video stream,
            no frames, an unknown codec, frames of different sizes.
    """
    if path.is_dir():
        return _open_folder(path, fps)
    if not path.exists():
        raise VideoError(f"{path}: no such file or folder")
    return _open_video(path)


def _open_folder(path: Path, fps: float | None) -> Source:
    files = _frame_files(path)
    if not files:
        raise VideoError(f"{path}: a folder with no frames ({', '.join(IMAGE_SUFFIXES)})")
    sizes = (0, 0)
    for index, frame in enumerate(files, 1):
        size = _frame_size(path, frame, index)
        if index == 1:
            sizes = size
        elif size != sizes:
            raise VideoError(_size_message(path, frame, index, size, sizes))
    rate = Fraction(fps).limit_denominator(1001) if fps else DEFAULT_FPS
    return Source(path, "frames", rate, sizes, len(files), files=files)


def _frame_size(folder: Path, frame: Path, index: int) -> tuple[int, int]:
    """``(H, W)`` of a frame file from its header, upright as its EXIF orientation says."""
    try:
        with Image.open(frame) as image:
            width, height = image.size
            # a PNG's EXIF after its pixels would mean decoding it all: the frame size
            # check while reading catches such a turned frame
            header = image.format != "PNG" or "exif" in image.info
            turned = header and image.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise VideoError(f"{folder}: frame {index} ({frame.name}) is not an image: "
                         f"{exc}") from None
    return (width, height) if turned else (height, width)


def _av_message(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.strip().rstrip(".") or type(exc).__name__


def _open_container(path: Path) -> Any:
    import av

    try:
        return av.open(str(path))
    except av.FFmpegError as exc:
        raise VideoError(f"{path}: not a readable video ({_av_message(exc)}); a truncated "
                         f"or damaged file, or not a video") from None


def _video_stream(container: Any, path: Path) -> Any:
    if not container.streams.video:
        raise VideoError(f"{path}: no video stream in the file")
    stream = container.streams.video[0]
    codec = stream.codec_context
    if codec is None or not getattr(codec, "name", None) or codec.name == "none":
        raise VideoError(f"{path}: unknown video codec (FFmpeg has no decoder for it); "
                         f"convert the clip, e.g. ffmpeg -i {path.name} -c:v libx264 out.mp4")
    return stream


def _open_video(path: Path) -> Source:
    with _open_container(path) as container:
        stream = _video_stream(container, path)
        rate = stream.average_rate or stream.guessed_rate or DEFAULT_FPS
        count = int(stream.frames) or None
        audio = bool(container.streams.audio)
    with contextlib.closing(_decode(path, None)) as frames:
        first = next(frames, None)
    if first is None:
        raise VideoError(f"{path}: a video with no frames")
    return Source(path, "video", Fraction(rate), first.shape[:2], count, audio=audio)


def _decode(path: Path, size: tuple[int, int] | None) -> Iterator[np.ndarray]:
    import av

    index = 0
    with _open_container(path) as container:
        stream = _video_stream(container, path)
        try:
            for frame in container.decode(stream):
                index += 1
                pixels = frame.to_ndarray(format="rgb24")
                if size is not None and pixels.shape[:2] != size:
                    raise VideoError(f"{path}: frame {index} is {pixels.shape[1]}x"
                                     f"{pixels.shape[0]}, the first "
                                     f"{size[1]}x{size[0]}; the clip changes size")
                yield pixels
        except av.FFmpegError as exc:
            raise VideoError(f"{path}: decoding failed after {index} frame(s) "
                             f"({_av_message(exc)}); a truncated or damaged file") from None


def _even(pixels: np.ndarray) -> np.ndarray:
    """Pad ``(H, W, 3)`` to even sides by repeating the last row or column (yuv420p needs)."""
    h, w = pixels.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return pixels
    return np.pad(pixels, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def encode_video(frames: Sequence[Path], target: Path, fps: Fraction,
                 audio_from: Path | None = None, crf: int = 18) -> Path:
    """Encode image files as an H.264 video (yuv420p, ``crf``) at ``fps``, atomically, with
    the audio of ``audio_from`` copied (re-encoded as AAC if the container refuses it) and cut
    to the video's length.

    Odd sides are padded by one repeated row or column (yuv420p needs even sides).
    """
    import av

    if not frames:
        raise VideoError(f"{target.name}: no frames to encode")
    fps = Fraction(fps).limit_denominator(100000)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(target) as handle, av.open(handle, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        with Image.open(frames[0]) as image:
            first = _even(np.asarray(image.convert("RGB")))
        stream.height, stream.width = first.shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf)}
        audio = _audio_source(audio_from, out) if audio_from is not None else None
        for path in frames:
            with Image.open(path) as image:
                pixels = _even(np.asarray(image.convert("RGB")))
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if audio is not None:
            audio.copy(out, len(frames) / fps)
    return target


MP4_AUDIO = frozenset({"aac", "mp3", "ac3", "eac3", "opus", "flac", "alac"})
"""Audio codecs copied into the MP4 as they are; others are re-encoded as AAC."""


class _Audio:
    """The first audio stream of a clip, to be copied (or re-encoded as AAC) into ``out``."""

    def __init__(self, container: Any, out: Any) -> None:
        self.container = container
        self.source = container.streams.audio[0]
        self.copying = self.source.codec_context.name in MP4_AUDIO
        if self.copying:
            self.stream = out.add_stream_from_template(self.source)
        else:  # a codec the MP4 muxer cannot take as it is (PCM, Vorbis...)
            rate = self.source.codec_context.sample_rate or 48000
            self.stream = out.add_stream("aac", rate=rate)

    def copy(self, out: Any, seconds: Fraction) -> None:
        import av

        limit = float(seconds)
        try:
            if self.copying:
                for packet in self.container.demux(self.source):
                    if packet.dts is None:
                        continue
                    if packet.pts is not None and packet.time_base is not None \
                            and float(packet.pts * packet.time_base) >= limit:
                        continue
                    packet.stream = self.stream
                    out.mux(packet)
            else:
                for frame in self.container.decode(self.source):
                    if frame.time is not None and frame.time >= limit:
                        break
                    frame.pts = None
                    for packet in self.stream.encode(frame):
                        out.mux(packet)
                for packet in self.stream.encode():
                    out.mux(packet)
        except av.FFmpegError:
            pass  # damaged audio: the video keeps what was copied
        finally:
            self.container.close()


def _audio_source(path: Path, out: Any) -> _Audio | None:
    import av

    try:
        container = av.open(str(path))
    except av.FFmpegError:
        return None
    if not container.streams.audio:
        container.close()
        return None
    return _Audio(container, out)

