"""Stylising one clip frame by frame: each frame started from the previous result warped by
optical flow, with the temporal loss on the pixels the flow can be trusted at (Ruder et al.
2016); a record per frame, so a rerun resumes after the last finished frame.

Layout of one clip's output, for the job whose output is ``OUT/NAME.mp4``::

    OUT/NAME.mp4                the encoded video (the source's frame rate, its audio)
    OUT/NAME/frames/000001.png  each stylised frame, written atomically
    OUT/NAME/manifest.jsonl     one record per finished frame, appended and fsynced
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from nstkit.config import StylizeConfig
from nstkit.config_overrides import apply_overrides
from nstkit.image import load_image, resize_longest, save_image
from nstkit.optimisation import StyleCache
from nstkit.plugins import PluginHost, get_host
from nstkit.runner.manifest import ManifestWriter, file_sha256, latest_records
from nstkit.stylisation import stage_plan, stylize
from nstkit_video.flow import estimate_flow, occlusion_mask, warp, warping_error
from nstkit_video.frames import Source, VideoError, encode_video, frame_sha256, open_source
from nstkit_video.loss import GUIDE_TARGET, GUIDE_WEIGHTS

Mode = Literal["consistent", "independent"]
DEFAULT_TEMPORAL_WEIGHT = 1e7
"""The temporal term's weight when the recipe has none (relative to the recipe's weights)."""
TEMPORAL = "temporal"


@dataclass(frozen=True)
class VideoSettings:
    """How a clip is stylised, besides the recipe.

    Attributes:
        mode: ``consistent`` (warped start, temporal loss) or ``independent`` (every frame on
            its own, as a batch of stills: the flicker baseline).
        temporal_weight: the ``temporal`` term's weight; ``None``: the recipe's, else
            :data:`DEFAULT_TEMPORAL_WEIGHT`; 0: no temporal term (the warped start only).
        flow: ``dis``, ``farneback`` or ``raft`` (see :func:`nstkit_video.flow.estimate_flow`).
        motion_boundaries: leave motion boundaries out of the temporal loss too.
        fps: a frame folder's frame rate (``None``: 25); a clip keeps its own.
        later_stages: with ``consistent``, how frames after the first run a multi-scale
            recipe: ``last``, only its last (full-size) stage with that stage's steps (the
            warped start is already stylised; a coarse stage would blur it and synthesise the
            texture anew), or ``all`` its stages, as the first frame.
    """

    mode: Mode = "consistent"
    temporal_weight: float | None = None
    flow: str = "dis"
    motion_boundaries: bool = True
    fps: float | None = None
    later_stages: Literal["last", "all"] = "last"

    def key(self, config: StylizeConfig) -> str:
        """A digest of everything a frame's result depends on besides its inputs (not the
        frame rate: a new ``--fps`` re-encodes the video from the same frames)."""
        settings = {k: v for k, v in asdict(self).items() if k != "fps"}
        data = {"config": config.model_dump(mode="json"), "settings": settings}
        text = json.dumps(data, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def video_config(config: StylizeConfig, settings: VideoSettings,
                 host: PluginHost | None = None) -> StylizeConfig:
    """The recipe's config with the ``temporal`` term as ``settings`` ask: removed for
    ``independent`` or weight 0, else one term at the asked (or the recipe's, or the default)
    weight (validated against ``host``'s components)."""
    terms = [term.model_dump(exclude_unset=True) for term in config.losses]
    others = [term for term in terms if term["name"] != TEMPORAL]
    own = [term for term in terms if term["name"] == TEMPORAL]
    weight = settings.temporal_weight
    if weight is None:
        weight = own[0].get("weight", 1.0) if own else DEFAULT_TEMPORAL_WEIGHT
    if settings.mode == "consistent" and weight:
        others.append({**(own[0] if own else {"name": TEMPORAL}), "weight": weight})
    if others == terms:
        return config
    return apply_overrides(config, {"losses": others}, host or get_host())


def later_config(config: StylizeConfig, settings: VideoSettings) -> StylizeConfig:
    """The config of the frames after the first: with ``consistent`` and ``later_stages:
    last``, a multi-scale recipe's last stage alone, with that stage's steps."""
    if settings.mode != "consistent" or settings.later_stages != "last" \
            or config.multiscale is None:
        return config
    shares = config.multiscale.stages(config.size) if config.size else \
        config.multiscale.stages()
    steps = stage_plan(config.iterations, shares)[-1][1]
    optimizer = config.optimizer.model_copy(update={"iterations": steps})
    return config.model_copy(update={"multiscale": None, "optimizer": optimizer})


@dataclass
class FrameGuides:
    """What the previous frame tells the next one (all ``(1, C, H, W)``, on the CPU).

    Attributes:
        warped: the previous result warped into this frame, RGB in ``[0, 1]``.
        mask: 1 where the flow is trusted (``(1, 1, H, W)``).
        backward: the flow of this frame towards the previous one, in pixels.
        seconds: the time the two flows and the warp took.
    """

    warped: torch.Tensor
    mask: torch.Tensor
    backward: torch.Tensor
    seconds: float


def frame_guides(previous_frame: torch.Tensor, frame: torch.Tensor,
                 previous_result: torch.Tensor, flow: str = "dis",
                 motion_boundaries: bool = True) -> FrameGuides:
    """Flow both ways between two content frames, the occlusion mask, and the previous result
    warped into the current frame.

    Shape:
        - previous_frame, frame, previous_result: ``(1, 3, H, W)``, RGB in ``[0, 1]``.
    """
    start = time.perf_counter()
    backward = estimate_flow(frame, previous_frame, flow)
    forward = estimate_flow(previous_frame, frame, flow)
    mask = occlusion_mask(backward, forward, motion_boundaries=motion_boundaries)
    warped = warp(previous_result.float(), backward).clamp(0, 1)
    return FrameGuides(warped, mask, backward, time.perf_counter() - start)


def quantised(image: torch.Tensor) -> torch.Tensor:
    """``image`` as its 8-bit file holds it (``round(x·255)/255``), so the next frame starts
    from the same pixels whether it follows at once or after a resume."""
    return (image.clamp(0, 1) * 255).round() / 255


@dataclass
class FrameOutcome:
    """One frame: its number (from 1), whether it was resumed (already done), its result
    ``(1, 3, H, W)``, the estimated warping error against the previous result (NaN for the
    first frame) and its timings."""

    index: int
    resumed: bool
    image: torch.Tensor
    warping_error: float = math.nan
    stylize_seconds: float = 0.0
    flow_seconds: float = 0.0
    losses: dict[str, float] = field(default_factory=dict)


@dataclass
class ClipResult:
    """What became of one clip (the fields of its record in ``OUT/manifest.jsonl``)."""

    frames: int
    resumed: int
    fps: Fraction
    size: tuple[int, int]
    warping_error: float
    seconds_per_frame: float
    flow_seconds_per_frame: float
    video_sha256: str
    audio: bool

    def fields(self) -> dict[str, Any]:
        return {"frames": self.frames, "resumed_frames": self.resumed,
                "fps": str(self.fps), "size": list(self.size),
                "warping_error": _round(self.warping_error),
                "seconds_per_frame": round(self.seconds_per_frame, 3),
                "flow_seconds_per_frame": round(self.flow_seconds_per_frame, 4),
                "audio": self.audio, "output_sha256": self.video_sha256}


def _round(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 6)


FrameReport = Callable[[FrameOutcome, int | None], None]


def _ignore(outcome: FrameOutcome, total: int | None) -> None:
    """The default frame report: nothing."""


def clip_folder(out: Path, output: str) -> Path:
    """``OUT/NAME`` for the job whose video is ``OUT/NAME.mp4``."""
    return out / Path(output).with_suffix("")


def frame_name(index: int) -> str:
    return f"frames/{index:06d}.png"


def stylise_video(source: Path | Source, style: Path | torch.Tensor, config: StylizeConfig,
                  out: Path, output: str, *, settings: VideoSettings | None = None,
                  device: str | torch.device | None = "cpu", host: PluginHost | None = None,
                  report: FrameReport = _ignore, cache: StyleCache | None = None,
                  overwrite: bool = False, encode: bool = True,
                  overrides: Mapping[str, Any] | None = None) -> ClipResult:
    """Stylise every frame of ``source`` with ``style`` as ``config`` says, in order.

    Frame 1 is stylised as the recipe says. With ``settings.mode == "consistent"`` each later
    frame starts from the previous result warped by the backward flow (the pixels where the
    flow is not trusted start from the content frame instead) and gets the guides of the
    ``temporal`` term. Frames already recorded as done in ``OUT/NAME/manifest.jsonl`` (same
    inputs, same config and settings, output file unchanged) are not redone, up to the first
    that is not: from there on every frame is redone, since each depends on the one before.

    Args:
        source: a clip or folder of frames (or one already opened by
            :func:`nstkit_video.frames.open_source`).
        style: the style image.
        config: the recipe's config (the ``temporal`` term is set by :func:`video_config`).
        out, output: the output folder and the job's video name (``NAME.mp4``).
        report: called after each frame with its outcome and the number of frames (if known).
        cache: style features shared between frames (and clips).
        overwrite: redo every frame.
        encode: write ``OUT/NAME.mp4`` at the end.
        overrides: passed to :func:`nstkit.stylize` (e.g. ``extractor=`` a built one).

    Raises:
        VideoError: the source cannot be read (then nothing more is written for it).
        KeyboardInterrupt: the frames finished so far are kept and recorded.
    """
    settings = settings or VideoSettings()
    clip = source if isinstance(source, Source) else open_source(Path(source), settings.fps)
    run_config = video_config(config, settings, host)
    next_config = later_config(run_config, settings)
    key = settings.key(run_config)
    folder = clip_folder(out, output)
    (folder / "frames").mkdir(parents=True, exist_ok=True)
    for stale in (folder / "frames").glob(".*.tmp"):  # a frame being written when killed
        stale.unlink(missing_ok=True)
    records = {} if overwrite else latest_records(folder)
    writer = ManifestWriter(folder)
    style_image = load_image(style)
    style_sha = hashlib.sha256(style_image.numpy().tobytes()).hexdigest()
    cache = cache if cache is not None else StyleCache()
    redo = overwrite
    previous: tuple[torch.Tensor, torch.Tensor] | None = None  # (content frame, result)
    tally = _Tally()  # what the clip's record needs; no frame is kept past the next one
    for index, pixels in enumerate(clip.frames(), 1):
        content = resize_longest(_tensor(pixels), config.size)
        name = frame_name(index)
        source_sha = frame_sha256(pixels)
        if not redo and _done(records.get(name), folder / name, key, source_sha, style_sha):
            record = records[name]
            image = load_image(folder / name)
            outcome = FrameOutcome(index, True, image, _nan(record.get("warping_error")),
                                   record.get("stylize_seconds", 0.0),
                                   record.get("flow_seconds", 0.0), record.get("losses", {}))
        else:
            redo = True
            total = f"/{clip.count}" if clip.count else ""
            outcome = stylise_frame(content, previous, style_image,
                                    run_config if index == 1 else next_config, settings,
                                    device=device, host=host, cache=cache, index=index,
                                    job_name=f"{output} frame {index}{total}",
                                    job_extra={"video": str(clip.path), "frame": index,
                                               "output": output}, overrides=overrides)
            save_image(outcome.image, folder / name)
            writer.append({
                "output": name, "frame": index, "status": "done", "key": key,
                "source_sha256": source_sha, "style_sha256": style_sha,
                "output_sha256": file_sha256(folder / name), "mode": settings.mode,
                "flow": settings.flow, "warping_error": _round(outcome.warping_error),
                "stylize_seconds": round(outcome.stylize_seconds, 3),
                "flow_seconds": round(outcome.flow_seconds, 4), "losses": outcome.losses,
                "finished": datetime.now(timezone.utc).isoformat(timespec="microseconds")})
        tally.add(outcome, folder / name)
        report(outcome, clip.count)
        previous = (content, outcome.image)
    if previous is None:  # open_source decoded a first frame, so only a changed file gets here
        raise VideoError(f"{clip.path}: no frames")
    target = out / output
    if encode:
        encode_video(tally.files, target, clip.fps, clip.path if clip.audio else None)
    return ClipResult(
        len(tally.files), tally.resumed, clip.fps, tuple(previous[1].shape[-2:]),
        float(np.mean(tally.errors)) if tally.errors else math.nan,
        float(np.mean(tally.seconds)), float(np.mean(tally.flow_seconds)),
        file_sha256(target) if encode else "", clip.audio)


@dataclass
class _Tally:
    """The numbers of a clip's frames so far (and their files), for its record."""

    files: list[Path] = field(default_factory=list)
    resumed: int = 0
    errors: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    flow_seconds: list[float] = field(default_factory=list)

    def add(self, outcome: FrameOutcome, path: Path) -> None:
        self.files.append(path)
        self.resumed += outcome.resumed
        if not math.isnan(outcome.warping_error):
            self.errors.append(outcome.warping_error)
        self.seconds.append(outcome.stylize_seconds + outcome.flow_seconds)
        self.flow_seconds.append(outcome.flow_seconds)


def _nan(value: Any) -> float:
    return math.nan if value is None else float(value)


def _tensor(pixels: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(1, 3, H, W)`` float in ``[0, 1]``."""
    return torch.from_numpy(np.array(pixels, dtype=np.uint8)).permute(2, 0, 1).unsqueeze(0) \
        .float().div(255)


def _done(record: dict[str, Any] | None, path: Path, key: str, source_sha: str,
          style_sha: str) -> bool:
    if record is None or record.get("status") != "done" or not path.is_file():
        return False
    try:
        return (record.get("key") == key and record.get("source_sha256") == source_sha
                and record.get("style_sha256") == style_sha
                and record.get("output_sha256") == file_sha256(path))
    except OSError:
        return False


def stylise_frame(content: torch.Tensor, previous: tuple[torch.Tensor, torch.Tensor] | None,
                  style: torch.Tensor, config: StylizeConfig, settings: VideoSettings, *,
                  device: str | torch.device | None = "cpu", host: PluginHost | None = None,
                  cache: StyleCache | None = None, index: int = 1,
                  job_name: str = "frame", job_extra: Mapping[str, Any] | None = None,
                  overrides: Mapping[str, Any] | None = None) -> FrameOutcome:
    """Stylise one frame, given the previous content frame and result (``None`` for the
    first): with ``consistent``, started from the previous result warped (where the flow is
    trusted; the content elsewhere) and with the temporal term's guides. ``config`` is used as
    it is (see :func:`video_config` and :func:`later_config`).

    Shape:
        - content: ``(1, 3, H, W)``, RGB in ``[0, 1]``, at the result's size.
        - previous: two ``(1, 3, H, W)``: the previous content frame and result.
        - Output: :class:`FrameOutcome` with the result quantised to 8 bits.
    """
    kwargs: dict[str, Any] = dict(overrides or {})
    guides = None
    flow_seconds = 0.0
    if previous is not None:
        found = frame_guides(previous[0], content, previous[1], settings.flow,
                             settings.motion_boundaries)
        flow_seconds = found.seconds
        if settings.mode == "consistent":
            kwargs["init"] = found.mask * found.warped + (1 - found.mask) * content
            guides = {GUIDE_TARGET: found.warped, GUIDE_WEIGHTS: found.mask}
    result = stylize(content, style, config, device=device, host=host, cache=cache,
                     guides=guides, job_name=job_name, job_extra=job_extra, **kwargs)
    image = quantised(result.image)
    error = math.nan
    if previous is not None:
        error = warping_error(image, found.warped, found.mask)
    return FrameOutcome(index, False, image, error, result.wall_time, flow_seconds,
                        result.final_losses())
