"""Temporal consistency against frame-by-frame stylisation, on a clip whose motion is known.

A crop window pans over a picture by whole pixels per frame, so the true flow is known
exactly. The clip is stylised twice with the same recipe, in one run: ``independent`` (every
frame on its own) and ``consistent`` (the previous result warped as the start, the temporal
loss). For each, the temporal warping error ``mean |O_t - warp(O_{t-1})|`` over the pixels
the true motion keeps in frame (warped with the true motion), and the time per frame (the
stylisation, plus flow and warping for ``consistent``). Prints a table, the ratios against the
aims (at most 0.5x the error, at most 1.3x the time per frame) and the machine's load.

The two modes run interleaved, frame by frame, so both see the same machine load. Run from
the repository root (about 6 minutes on 2 busy CPU cores with the defaults):

    python plugins/nstkit-video/bench/temporal.py
    python plugins/nstkit-video/bench/temporal.py --recipe preview --frames 8 --size 96
    python plugins/nstkit-video/bench/temporal.py --flow-only    # the flows alone: seconds
    python plugins/nstkit-video/bench/temporal.py --content photo.jpg --style painting.jpg \\
        --strip plugins/nstkit-video/docs/strip.png
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import time
from pathlib import Path

import torch
from nstkit_video.clip import VideoSettings, later_config, stylise_frame, video_config
from nstkit_video.flow import estimate_flow, flow_error, warp, warping_error
from nstkit_video.synthetic import pan_flow, panning_clip

from nstkit.image import load_image, resize_longest, save_image
from nstkit.optimisation import StyleCache
from nstkit.plugins import get_host
from nstkit.recipe import load_recipe
from nstkit.samples import samples_dir


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--size", type=int, default=128, help="frame width (px)")
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--step", type=int, nargs=2, default=(1, 3), metavar=("DY", "DX"),
                        help="pan per frame in pixels")
    parser.add_argument("--temporal-weight", type=float, default=None)
    parser.add_argument("--content", type=Path,
                        default=samples_dir() / "content" / "chelsea.jpg")
    parser.add_argument("--style", type=Path,
                        default=samples_dir() / "style" / "starry_night.jpg")
    parser.add_argument("--set", dest="sets", action="append", default=[],
                        help="override a recipe key, as nstkit run --set (repeatable)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: fastest on a shared, busy machine)")
    parser.add_argument("--strip", type=Path, default=None,
                        help="write a PNG strip: content, independent, consistent, and each "
                             "mode's |O_t - warp(O_t-1)|")
    parser.add_argument("--strip-frames", type=int, default=6)
    parser.add_argument("--flow-only", action="store_true",
                        help="only measure the estimated flows against the true motion")
    return parser.parse_args()


def _flow_errors(frames: list[torch.Tensor], step: tuple[int, int]) -> None:
    """Print each flow method's mean end-point error (px) against the true motion, over the
    pixels the pan keeps in frame, and its time per frame pair."""
    true, mask = pan_flow(tuple(frames[0].shape[-2:]), step)
    for method in ("dis", "farneback"):
        start = time.perf_counter()
        errors = [flow_error(estimate_flow(now, before, method), true, mask)
                  for before, now in itertools.pairwise(frames)]
        seconds = (time.perf_counter() - start) / len(errors)
        print(f"{method} flow end-point error: mean {_mean(errors):.3f} px, max "
              f"{max(errors):.3f} px over {len(errors)} frame pairs ({seconds * 1000:.1f} ms "
              f"a pair)")


def _true_errors(images: list[torch.Tensor], step: tuple[int, int]) -> list[float]:
    flow, mask = pan_flow(tuple(images[0].shape[-2:]), step)
    return [warping_error(now, warp(before, flow), mask)
            for before, now in itertools.pairwise(images)]


def main() -> None:
    args = _arguments()
    torch.set_num_threads(args.threads)
    step = (args.step[0], args.step[1])
    height = round(args.size * 3 / 4)
    need = (height + (args.frames - 1) * step[0], args.size + (args.frames - 1) * step[1])
    picture = load_image(args.content)
    scale = max(need[0] / picture.shape[-2], need[1] / picture.shape[-1])
    picture = resize_longest(picture, math.ceil(max(picture.shape[-2:]) * max(scale, 1.0)))
    frames = panning_clip(picture, args.frames, (height, args.size), step)
    _flow_errors(frames, step)
    if args.flow_only:
        return
    recipe = load_recipe(args.recipe, [f"size={args.size}", *args.sets])
    host = get_host()
    style = load_image(args.style)
    cache = StyleCache()
    modes = {}
    for mode in ("independent", "consistent"):
        settings = VideoSettings(mode=mode, temporal_weight=args.temporal_weight)
        first = video_config(recipe.config, settings, host)
        modes[mode] = (settings, first, later_config(first, settings))
    outcomes: dict[str, list] = {mode: [] for mode in modes}
    load_before = os.getloadavg()
    for index, frame in enumerate(frames, 1):  # interleaved: both modes see the same load
        for mode, (settings, first, later) in modes.items():
            done = outcomes[mode]
            previous = (frames[index - 2], done[-1].image) if done else None
            done.append(stylise_frame(frame, previous, style, first if index == 1 else later,
                                      settings, device=args.device, host=host, cache=cache,
                                      index=index, job_name=f"{mode} frame {index}"))
        print(f"frame {index}: " + ", ".join(
            f"{mode} {kept[-1].stylize_seconds:.1f} s" for mode, kept in outcomes.items()),
            flush=True)
    load_after = os.getloadavg()
    rows = {}
    for mode, kept in outcomes.items():
        per_frame = [o.stylize_seconds + (o.flow_seconds if mode == "consistent" else 0)
                     for o in kept]
        images = [o.image for o in kept]
        rows[mode] = {"errors": _true_errors(images, step), "images": images,
                      "estimated": [o.warping_error for o in kept[1:]],
                      "seconds": sum(per_frame) / len(per_frame),
                      "later": sum(per_frame[1:]) / max(1, len(per_frame) - 1)}
    _table(args, rows, step, load_before, load_after)
    if args.strip is not None:
        _strip(args.strip, frames, rows, step, args.strip_frames)
        print(f"strip: {args.strip}")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _table(args: argparse.Namespace, rows: dict, step: tuple[int, int],
           before: tuple[float, ...], after: tuple[float, ...]) -> None:
    width = args.size
    sets = f" (--set {' '.join(args.sets)})" if args.sets else ""
    print(f"\n{args.recipe}{sets} at {width} px wide, {args.frames} frames panning {step[1]} px "
          f"right and {step[0]} down per frame, {args.device}, {torch.get_num_threads()} "
          f"torch threads")
    print("| mode | warping error, true motion (mean, max) | same, estimated DIS flow | "
          "s/frame | s/frame after the first |")
    print("|---|---|---|---|---|")
    for mode, row in rows.items():
        errors = row["errors"]
        print(f"| {mode} | {_mean(errors):.4f}, {max(errors):.4f} | "
              f"{_mean(row['estimated']):.4f} | {row['seconds']:.2f} | {row['later']:.2f} |")
    error_ratio = _mean(rows["consistent"]["errors"]) / _mean(rows["independent"]["errors"])
    time_ratio = rows["consistent"]["seconds"] / rows["independent"]["seconds"]
    later_ratio = rows["consistent"]["later"] / rows["independent"]["later"]
    print(f"| consistent / independent | {error_ratio:.2f}x | | {time_ratio:.2f}x | "
          f"{later_ratio:.2f}x |")
    print(f"\naims: error <= 0.5x: {'met' if error_ratio <= 0.5 else 'NOT met'} "
          f"({error_ratio:.2f}x); time per frame <= 1.3x: "
          f"{'met' if time_ratio <= 1.3 else 'NOT met'} ({time_ratio:.2f}x)")
    print(f"load average (1, 5, 15 min) before {', '.join(f'{x:.2f}' for x in before)}, "
          f"after {', '.join(f'{x:.2f}' for x in after)}; {os.cpu_count()} CPUs")


def _strip(path: Path, frames: list[torch.Tensor], rows: dict, step: tuple[int, int],
           count: int) -> None:
    """Rows: content, independent, consistent, then |O_t - warp(O_t-1)| of each (x4, grey)."""
    flow, mask = pan_flow(tuple(frames[0].shape[-2:]), step)
    shown = range(1, min(count, len(frames)))
    gap = 2

    def difference(images: list[torch.Tensor], t: int) -> torch.Tensor:
        diff = (images[t] - warp(images[t - 1], flow)).abs().mean(1, keepdim=True) * mask
        return (diff * 4).clamp(0, 1).expand(-1, 3, -1, -1)

    lines = [[frames[t] for t in shown],
             [rows["independent"]["images"][t] for t in shown],
             [rows["consistent"]["images"][t] for t in shown],
             [difference(rows["independent"]["images"], t) for t in shown],
             [difference(rows["consistent"]["images"], t) for t in shown]]
    h, w = frames[0].shape[-2:]
    canvas = torch.ones(1, 3, len(lines) * (h + gap) - gap, len(shown) * (w + gap) - gap)
    for r, line in enumerate(lines):
        for c, image in enumerate(line):
            canvas[..., r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = \
                image
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(canvas, path)


if __name__ == "__main__":
    main()
