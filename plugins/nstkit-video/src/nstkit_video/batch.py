"""Running ``nstkit video``'s jobs (every input x every style): skip finished videos, stylise
the others in this process or as Ray tasks (a whole video per task, its frames in order),
and record each in ``OUT/manifest.jsonl`` with the same fields as ``nstkit run``'s records.

A failed video (unreadable, truncated, no frames, unknown codec, frames of different sizes)
is recorded with its error and the others go on.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nstkit.optimisation import StyleCache
from nstkit.plugins import PluginHost
from nstkit.recipe import Recipe
from nstkit.runner.execute import is_done
from nstkit.runner.manifest import ManifestWriter, latest_records
from nstkit.runner.plan import Job, plan_jobs
from nstkit.runner.record import InputHashes, JobRecorder, Outcome, RunSummary
from nstkit_video.clip import ClipResult, FrameOutcome, VideoSettings, stylise_video, video_config
from nstkit_video.frames import input_sha256

Progress = Callable[[str, int, "int | None", bool, float, float], None]
"""``progress(video, frame, frames, resumed, seconds, error)``, after each frame."""


@dataclass
class VideoOptions:
    """How to run the videos (what to make is the recipe's and the settings' business).

    Attributes:
        out: the output folder.
        settings: the video settings of every job.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        overwrite: redo finished videos and frames.
        fail_fast: stop after the first failed video.
        shard: ``(I, N)`` when this process runs shard ``I`` of ``N``.
    """

    out: Path
    settings: VideoSettings
    device: str = "auto"
    overwrite: bool = False
    fail_fast: bool = False
    shard: tuple[int, int] | None = None


def plan_videos(inputs: Sequence[Path], styles: Sequence[Path], recipe: str) -> list[Job]:
    """Every input x every style, named ``<input>__<style>__<recipe>.mp4`` (as ``nstkit run``
    names its outputs; colliding names get a hash)."""
    return plan_jobs(inputs, styles, recipe, "mp4")


def video_key(recipe: Recipe, options: VideoOptions, host: PluginHost | None = None) -> str:
    """The digest of the config and settings every frame record of this run carries."""
    return options.settings.key(video_config(recipe.config, options.settings, host))


def split_done(jobs: Sequence[Job], recipe: Recipe, options: VideoOptions, key: str,
               hashes: Callable[[Path], str]) -> tuple[list[Job], list[Job]]:
    """``(to do, already done)``: done is a video recorded done with the same recipe, inputs,
    settings (the frame rate of a folder included) and an unchanged ``OUT/NAME.mp4``."""
    if options.overwrite or not options.out.exists():
        return list(jobs), []
    records = latest_records(options.out)
    todo, done = [], []
    for job in jobs:
        record = records.get(job.output)
        finished = record is not None and record.get("video") == _video_field(options, key) \
            and is_done(job, record, recipe, options.out, hashes)
        (done if finished else todo).append(job)
    return todo, done


def _video_field(options: VideoOptions, key: str) -> dict[str, Any]:
    """The ``video`` field of a video's record: its settings and the frames' key."""
    return {**dataclasses.asdict(options.settings), "key": key}


def _fields(result: ClipResult, options: VideoOptions, key: str) -> dict[str, Any]:
    return {**result.fields(), "video": _video_field(options, key)}


def run_video(recipe: Recipe, job: Job, options: VideoOptions, host: PluginHost | None,
              progress: Progress, cache: StyleCache | None = None) -> ClipResult:
    """Stylise one job's video (resuming its finished frames) and encode it."""
    def report(outcome: FrameOutcome, total: int | None) -> None:
        progress(job.output, outcome.index, total, outcome.resumed,
                 outcome.stylize_seconds + outcome.flow_seconds, outcome.warping_error)

    return stylise_video(job.content, job.style, recipe.config, options.out, job.output,
                         settings=options.settings, device=options.device, host=host,
                         report=report, cache=cache, overwrite=options.overwrite)


def _recorder(recipe: Recipe, options: VideoOptions, report: Callable[..., None],
              hashes: InputHashes, worker: dict[str, Any] | None = None) -> JobRecorder:
    from nstkit.components import resolve_device

    return JobRecorder(recipe, str(resolve_device(options.device)),
                       ManifestWriter(options.out, options.shard), report,
                       shard=options.shard, worker=worker, hashes=hashes)


def run_local(recipe: Recipe, jobs: Sequence[Job], options: VideoOptions, host: PluginHost,
              progress: Progress, report: Callable[..., None], key: str,
              hashes: InputHashes | None = None) -> RunSummary:
    """Run the videos one after the other in this process; Ctrl-C stops the run (the
    finished frames stay recorded) with ``summary.interrupted`` set. ``hashes``: the inputs'
    sha256 (:func:`nstkit_video.frames.input_sha256`), cached for the run."""
    recorder = _recorder(recipe, options, report, hashes or InputHashes(input_sha256))
    cache = StyleCache()
    try:
        for job in jobs:
            start = time.perf_counter()
            try:
                result = run_video(recipe, job, options, host, progress, cache)
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                recorder.failed([job], exc, time.perf_counter() - start)
            else:
                recorder.done(job, time.perf_counter() - start, {},
                              **_fields(result, options, key))
            if options.fail_fast and recorder.summary.count("failed"):
                break
    except KeyboardInterrupt:
        recorder.summary.interrupted = True
    return recorder.summary


# --- Ray: a remote task per video ---------------------------------------------------------------


def _remote_video(recipe: Recipe, job: Job, options: VideoOptions, env: dict[str, str],
                  queue: Any) -> tuple[str, Any, float]:
    """A Ray task: one whole video; returns ``("done", fields, seconds)`` or
    ``("failed", message, seconds)``."""
    os.environ.update(env)
    from nstkit.plugins import get_host

    def progress(*args: Any) -> None:
        queue.put_nowait(args)

    start = time.perf_counter()
    try:
        result = run_video(recipe, job, options, get_host(), progress)
    except Exception as exc:
        return "failed", f"{type(exc).__name__}: {exc}", time.perf_counter() - start
    key = video_key(recipe, options)
    return "done", _fields(result, options, key), time.perf_counter() - start


def run_ray(recipe: Recipe, jobs: Sequence[Job], options: VideoOptions, progress: Progress,
            report: Callable[..., None], address: str | None = None,
            hashes: InputHashes | None = None) -> RunSummary:
    """Run each video as a Ray task (one CPU each, or one GPU each on a cluster with GPUs
    unless ``--device cpu``); the driver records them as they finish. The output folder must
    be one every worker can write (a local cluster, or a shared file system)."""
    import ray
    from ray.util.queue import Empty, Queue

    from nstkit.executors.ray import connect, short_error, task_options, worker_env

    recorder = _recorder(recipe, options, report, hashes or InputHashes(input_sha256),
                         {"engine": "ray"})
    if not jobs:
        return recorder.summary
    started = connect(address)
    queue = Queue()
    pending: dict[Any, tuple[Job, float]] = {}
    try:
        remote = ray.remote(_remote_video).options(max_retries=0,
                                                    **task_options(options.device))
        sent = dataclasses.replace(options, out=options.out.resolve(),
                                   device="cuda" if options.device.startswith("cuda")
                                   else options.device)
        env = worker_env()
        for job in jobs:
            moved = dataclasses.replace(job, content=job.content.resolve(),
                                        style=job.style.resolve())
            pending[remote.remote(recipe, moved, sent, env, queue)] = (job, time.perf_counter())
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.2)
            while True:
                try:
                    progress(*queue.get_nowait())
                except Empty:
                    break
            for ref in ready:
                job, begun = pending.pop(ref)
                try:
                    status, payload, seconds = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    recorder.failed([job], RuntimeError(short_error(exc)),
                                    time.perf_counter() - begun)
                    continue
                if status == "done":
                    recorder.done(job, seconds, {}, **payload)
                else:  # the worker's "Type: message", recorded as failed() would
                    recorder.add(Outcome(job, "failed", seconds, error=payload),
                                 recorder.record(job, "failed", seconds, error=payload))
            if options.fail_fast and recorder.summary.count("failed"):
                break
    except KeyboardInterrupt:
        recorder.summary.interrupted = True
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        queue.shutdown()
        if started:
            ray.shutdown()
    return recorder.summary

