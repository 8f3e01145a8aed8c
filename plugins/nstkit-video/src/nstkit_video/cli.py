"""``nstkit video``: a recipe over clips and frame folders, frame by frame, temporally
consistent; resumable, recorded in OUT/manifest.jsonl (per video) and OUT/NAME/manifest.jsonl
(per frame).

Imports typer and light parts of nstkit only: torch, PyAV and OpenCV are imported when the
command runs. The options shared with ``nstkit run`` are the same declarations
(:mod:`nstkit.cli.options`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.table import Table

from nstkit.cli.common import (
    check_device,
    console,
    err,
    fail,
    host,
    load,
    load_extractor,
    prepare_out,
    run_errors,
)
from nstkit.cli.options import (
    Address,
    Device,
    DryRun,
    Engine,
    FailFast,
    Iterations,
    Out,
    Overwrite,
    Quiet,
    RecipeRef,
    Seed,
    Sets,
    Shard,
    Size,
    Strength,
    Style,
    overrides,
    shard_option,
)
from nstkit.errors import NstkitError

if TYPE_CHECKING:
    from nstkit.plugins import PluginHost
    from nstkit.recipe import Recipe
    from nstkit.runner.plan import Job
    from nstkit.runner.record import Outcome, RunSummary
    from nstkit_video.batch import VideoOptions

Inputs = Annotated[list[Path], typer.Option(
    "--input", "-i", help="A video file or a folder of frames (repeatable).")]
ENGINES = ("local", "ray")


def video(
    recipe: RecipeRef,
    inputs: Inputs,
    style: Style,
    out: Out,
    device: Device = "auto",
    size: Size = None,
    iterations: Iterations = None,
    seed: Seed = None,
    strength: Strength = None,
    sets: Sets = None,
    mode: Annotated[Literal["consistent", "independent"], typer.Option(
        help="consistent: each frame starts from the previous result warped by optical flow, "
             "with the temporal loss; independent: every frame on its own.")] = "consistent",
    temporal_weight: Annotated[float | None, typer.Option(
        min=0, help="Weight of the temporal loss (default: the recipe's 'temporal' term, else "
                    "1e7; 0: the warped start only).")] = None,
    flow: Annotated[Literal["dis", "farneback", "raft"], typer.Option(
        help="Optical flow: OpenCV's DIS or Farneback (CPU), or torchvision's RAFT (needs its "
             "weights on this machine).")] = "dis",
    later_stages: Annotated[Literal["last", "all"], typer.Option(
        help="consistent, multi-scale recipes: frames after the first run only the last "
             "(full-size) stage, or all stages.")] = "last",
    motion_boundaries: Annotated[bool, typer.Option(
        help="Leave motion boundaries out of the temporal loss.")] = True,
    fps: Annotated[float | None, typer.Option(
        min=0.001, help="Frame rate of frame folders (default 25); clips keep their own.")
    ] = None,
    overwrite: Overwrite = False,
    dry_run: DryRun = False,
    shard: Shard = None,
    engine: Engine = "local",
    address: Address = None,
    fail_fast: FailFast = False,
    quiet: Quiet = False,
) -> None:
    """Stylise clips or frame folders with RECIPE, frame by frame, temporally consistent.

    Writes OUT/NAME/frames/*.png, OUT/NAME.mp4 (the source's frame rate and audio) and a
    record per frame; a rerun resumes after the last finished frame. Exit codes: 0 all done,
    1 some videos failed, 2 bad usage or recipe, 130 interrupted.
    """
    from nstkit.runner.plan import find_images
    from nstkit_video.batch import VideoOptions, plan_videos
    from nstkit_video.clip import VideoSettings

    if engine not in ENGINES:
        fail(NstkitError(f"--engine {engine!r}: nstkit video runs videos locally or on Ray "
                         f"(--engine local or ray)"))
    resolved = load(recipe, overrides(sets, size=size, iterations=iterations, seed=seed,
                                      strength=strength))
    check_device(device, engine)
    try:
        for path in inputs:
            if not path.exists():
                raise NstkitError(f"--input {str(path)!r} does not exist")
        styles = [p for path in style for p in find_images(path, False, "style", out)]
        shard_spec = shard_option(shard)
    except NstkitError as exc:
        fail(exc)
    settings = VideoSettings(mode=mode, temporal_weight=temporal_weight, flow=flow,
                             motion_boundaries=motion_boundaries, fps=fps,
                             later_stages=later_stages)
    planned = plan_videos(inputs, styles, resolved.name)
    if shard_spec:
        from nstkit.runner.plan import select_shard

        jobs = select_shard(planned, *shard_spec)
    else:
        jobs = planned
    options = VideoOptions(out, settings, device, overwrite, fail_fast, shard_spec)
    plugins = _host()
    if flow == "raft":
        _check_raft()
    if dry_run:
        _print_plan(resolved, jobs, options, plugins)
        return
    # missing or corrupt weights stop here, not once per video (Ray workers: their own GPUs)
    load_extractor(resolved, device if engine == "local" else "cpu")
    prepare_out(out)
    _run(resolved, jobs, options, plugins, engine, address, quiet)


def _host() -> PluginHost:
    """The process-wide host, with this plugin's loss even where entry points are off."""
    plugins = host()
    if "temporal" not in plugins.losses:
        plugins.add("nstkit_video.plugin", name="video")
    return plugins


def _check_raft() -> None:
    from nstkit_video.flow import FlowError, raft_weights_path

    path = raft_weights_path()
    if not path.is_file():
        fail(FlowError(f"--flow raft needs torchvision's RAFT weights, which are not on this "
                       f"machine ({path} is missing); copy them there, or use --flow dis "
                       f"(the default) or farneback"))


def _print_plan(recipe: Recipe, jobs: list[Job], options: VideoOptions,
                plugins: PluginHost) -> None:
    from nstkit.runner.record import InputHashes
    from nstkit_video.batch import split_done, video_key
    from nstkit_video.frames import input_sha256

    key = video_key(recipe, options, plugins)
    todo, done = split_done(jobs, recipe, options, key, InputHashes(input_sha256))
    table = Table("input", "style", "output", "status", title=f"{recipe.name}: "
                  f"{len(todo)} to do, {len(done)} done")
    finished = set(done)
    for job in jobs:
        table.add_row(str(job.content), str(job.style), str(options.out / job.output),
                      "done" if job in finished else "to do")
    console.print(table)


def _run(recipe: Recipe, jobs: list[Job], options: VideoOptions, plugins: PluginHost,
         engine: str, address: str | None, quiet: bool) -> None:
    from nstkit.runner.record import InputHashes, write_summary
    from nstkit_video.batch import run_local, run_ray, split_done, video_key
    from nstkit_video.display import VideoDisplay
    from nstkit_video.frames import input_sha256

    hashes = InputHashes(input_sha256)
    key = video_key(recipe, options, plugins)
    todo, done = split_done(jobs, recipe, options, key, hashes)
    display = VideoDisplay(err, live=err.is_terminal and not quiet, frame_lines=not quiet)
    display.start(len(todo), len(done))

    def report(outcome: Outcome) -> None:
        display.video_finished(outcome.job.output, outcome.status, outcome.seconds,
                               outcome.error or "")

    plugins.add(display, name="nstkit_video.display")
    try:
        with run_errors(options.out):
            if engine == "ray":
                summary = run_ray(recipe, todo, options, display.frame_done, report, address,
                                  hashes)
            else:
                summary = run_local(recipe, todo, options, plugins, display.frame_done,
                                    report, key, hashes)
            write_summary(options.out, summary, len(done), options.shard)
    finally:
        display.close()
        plugins.remove("nstkit_video.display")
    _print_summary(summary, options, len(done))
    raise typer.Exit(summary.exit_code)


def _print_summary(summary: RunSummary, options: VideoOptions, skipped: int) -> None:
    from nstkit.runner.manifest import latest_records, manifest_name

    records = latest_records(options.out)
    table = Table("video", "frames", "resumed", "warping error", "s/frame", "status",
                  title=f"nstkit video -> {options.out}"
                  + (" (interrupted)" if summary.interrupted else ""))
    for outcome in summary.outcomes:
        record = records.get(outcome.job.output, {})
        error = record.get("warping_error")
        table.add_row(str(options.out / outcome.job.output), str(record.get("frames", "")),
                      str(record.get("resumed_frames", "")),
                      "" if error is None or math.isnan(error) else f"{error:.4f}",
                      f"{record['seconds_per_frame']:.2f}" if "seconds_per_frame" in record
                      else "", outcome.status)
    console.print(table)
    if skipped:
        console.print(f"{skipped} video(s) skipped (already done)", highlight=False)
    for outcome in summary.outcomes:
        if outcome.status == "failed":
            console.print(f"failed: {outcome.job.output}: {outcome.error or ''}",
                          highlight=False, markup=False)
    console.print("warping error: mean |O_t - warp(O_t-1)| over the pixels the estimated flow "
                  "trusts (RGB in [0, 1])", highlight=False)
    console.print(f"manifest: {options.out / manifest_name(options.shard)}", highlight=False)
