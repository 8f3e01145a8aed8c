"""Running planned jobs: skip finished ones, batch the rest, stylise them, save the outputs.

What becomes of each job is recorded by a :class:`nstkit.runner.record.JobRecorder`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageOps

from nstkit.components import build_extractor, resolve_device
from nstkit.config import INIT_CHOICES
from nstkit.image import load_image, print_info, resize_longest, save_image
from nstkit.masks import decode_mask, find_mask
from nstkit.memory import estimate_for_recipe
from nstkit.memory_plan import MemoryPlanError
from nstkit.optimisation import StyleCache
from nstkit.plugins import PluginHost
from nstkit.recipe import Recipe
from nstkit.runner.manifest import ManifestWriter, file_sha256, latest_records
from nstkit.runner.plan import Job
from nstkit.runner.record import (
    InputHashes,
    JobRecorder,
    Outcome,
    RecordSink,
    RunSummary,
    write_summary,
)
from nstkit.runner.sharing import SharedJobs
from nstkit.runner.snapshots import SnapshotWriter
from nstkit.stylisation import stylize

__all__ = ["InputHashes", "JobRecorder", "Outcome", "RecordSink", "RunOptions", "RunSummary",
           "Runner", "group_jobs", "is_done", "preflight", "run_batch", "split_done",
           "write_summary"]

# the keys of ``output`` each format passes to save_image (bit_depth: 16 for png and tiff)
SAVE_OPTIONS = {"jpg": ("quality",), "webp": ("quality",), "png": ("bit_depth",),
                "tiff": ("bit_depth",)}


@dataclass
class RunOptions:
    """How to run a plan (what to make is the recipe's business).

    Attributes:
        out: the output folder; nothing is written outside it.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        batch_size: same-size content images optimised together for one style.
        fail_fast: stop after the first failed job.
        shard: ``(I, N)`` when this process runs shard ``I`` of ``N``.
        planned_at: when the jobs were planned (``time.time()``, by default when the options
            are made: make them before looking for finished jobs); a job that any worker
            on the same folder records after it is not run again.
    """

    out: Path
    device: str = "auto"
    batch_size: int = 1
    fail_fast: bool = False
    shard: tuple[int, int] | None = None
    planned_at: float = field(default_factory=time.time)


def job_mask(job: Job, recipe: Recipe) -> Path | None:
    """The region mask of ``job``'s photo when the recipe has ``regions``
    (:func:`nstkit.masks.find_mask`: in the recipe's ``masks`` folder, else beside the photo);
    ``None`` without ``regions`` or without a mask (the photo runs unmasked)."""
    config = recipe.config
    if config.regions is None:
        return None
    return find_mask(job.content, Path(config.masks) if config.masks else None)


def is_done(job: Job, record: dict[str, Any] | None, recipe: Recipe, out_dir: Path,
            hashes: Callable[[Path], str]) -> bool:
    """The job's output exists, is the one its record describes, from the same recipe and
    the same input bytes (its region mask's too: a changed, added or removed mask redoes
    it)."""
    target = out_dir / job.output
    if record is None or record.get("status") != "done" or not target.is_file():
        return False
    try:
        mask = job_mask(job, recipe)
        return (record.get("recipe_hash") == recipe.hash
                and record.get("content", {}).get("sha256") == hashes(job.content)
                and record.get("style", {}).get("sha256") == hashes(job.style)
                and (record.get("mask") or {}).get("sha256") == (hashes(mask) if mask
                                                                 else None)
                and record.get("output_sha256") == file_sha256(target))
    except OSError:
        return False


def split_done(jobs: Sequence[Job], recipe: Recipe, out_dir: Path, overwrite: bool,
               hashes: Callable[[Path], str]) -> tuple[list[Job], list[Job]]:
    """``(to do, already done)``."""
    if overwrite or not out_dir.exists():
        return list(jobs), []
    records = latest_records(out_dir)
    todo, done = [], []
    for job in jobs:
        (done if is_done(job, records.get(job.output), recipe, out_dir, hashes) else todo
         ).append(job)
    return todo, done


def group_jobs(jobs: Sequence[Job], recipe: Recipe, batch_size: int) -> list[list[Job]]:
    """Batches of up to ``batch_size`` jobs sharing a style, for the recipes that can run
    batched (batch size 1, or any other recipe: one job each)."""
    config = recipe.config
    if batch_size <= 1 or config.preserve_colour or config.init not in INIT_CHOICES \
            or config.regions is not None:  # a mask per photo
        return [[job] for job in jobs]
    by_style: dict[Path, list[Job]] = {}
    for job in jobs:
        by_style.setdefault(job.style, []).append(job)
    return [group[i:i + batch_size] for group in by_style.values()
            for i in range(0, len(group), batch_size)]


def preflight(recipe: Recipe, device: torch.device, host: PluginHost) -> None:
    """Load the recipe's extractor once, so a missing weight file stops a run before any
    job."""
    extractor = recipe.config.extractor
    build_extractor(host, extractor.name, device, **extractor.options)


def _ignore(outcome: Outcome) -> None:
    """The default ``report``: nothing."""


class Runner:
    """Runs jobs of one recipe in this process: batches them, stylises, retries a batch that
    ran out of CUDA memory one job at a time, saves the outputs; see :func:`run_batch`.

    Args:
        recipe, options, host: what to run, how, and the plugin host whose hooks see it.
        report: called with each outcome, when the runner makes its own recorder.
        recorder: where every outcome is recorded; by default one that writes the manifest
            of ``options.out`` (and shard) and calls ``report``.
        cache: style targets to share with other runners of the same recipe.
    """

    def __init__(self, recipe: Recipe, options: RunOptions, host: PluginHost,
                 report: Callable[[Outcome], None] = _ignore, *,
                 recorder: JobRecorder | None = None, cache: StyleCache | None = None) -> None:
        self.recipe, self.options, self.host = recipe, options, host
        self.device = resolve_device(options.device)
        self.config = recipe.config
        self.suffix = recipe.data["output"]["format"]
        self.cache = cache if cache is not None else StyleCache()
        self.recorder = recorder if recorder is not None else JobRecorder(
            recipe, str(self.device), ManifestWriter(options.out, options.shard), report,
            shard=options.shard)
        self.masks: dict[Job, dict[str, Any] | None] = {}

    @property
    def summary(self) -> RunSummary:
        return self.recorder.summary

    def run(self, jobs: Sequence[Job]) -> RunSummary:
        """Run ``jobs`` group by group, each once claimed in the output folder, so other
        workers on it share them (:class:`nstkit.runner.sharing.SharedJobs`); a job another
        worker records meanwhile is ``skipped`` here."""
        groups = group_jobs(jobs, self.recipe, self.options.batch_size)
        try:
            with SharedJobs(self.options.out, groups, self.options.planned_at,
                            self.skipped) as shared:
                while group := shared.take(wait=True):
                    self.run_group(group)
                    shared.release(group)
                    if self.options.fail_fast and self.summary.count("failed"):
                        break
        except KeyboardInterrupt:
            self.summary.interrupted = True
        return self.summary

    def skipped(self, job: Job, detail: str) -> None:
        """``job`` was recorded by another worker (``detail``: how)."""
        self.recorder.add(Outcome(job, "skipped", error=detail))

    def run_group(self, group: list[Job]) -> None:
        """Run one job, or a batch sharing a style (by content image size)."""
        if len(group) == 1:
            self.run_jobs(group, group[0].content)
            return
        loaded: dict[tuple, list[tuple[Job, torch.Tensor]]] = {}
        for job in group:
            try:
                image = resize_longest(load_image(job.content), self.config.size)
            except Exception as exc:
                self.recorder.failed([job], exc, 0.0)
                continue
            loaded.setdefault(tuple(image.shape), []).append((job, image))
        for items in loaded.values():
            self.run_jobs([job for job, _ in items], torch.cat([img for _, img in items]))

    def check_mask(self, job: Job) -> Path | None:
        """Find and check ``job``'s region mask (see :func:`job_mask`), keeping what its
        record says of it (path, sha256, warnings such as a resize); ``None``: unmasked.

        Raises:
            MaskError: the mask cannot be used for this photo.
        """
        mask = job_mask(job, self.recipe)
        if mask is None:
            self.masks[job] = None
            return None
        with Image.open(job.content) as photo:
            size = ImageOps.exif_transpose(photo).size
        _, warnings = decode_mask(mask, list(self.config.regions or {}), (size[1], size[0]))
        self.masks[job] = {"path": str(mask), "sha256": self.recorder.hashes(mask),
                           "warnings": warnings}
        return mask

    def run_jobs(self, jobs: list[Job], content: Any) -> None:
        start = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        try:
            mask = self.check_mask(jobs[0]) if len(jobs) == 1 else None
            result = stylize(content, jobs[0].style, self.config, device=self.device,
                             host=self.host, job_name=jobs[0].output, cache=self.cache,
                             job_extra={"outputs": [job.output for job in jobs],
                                        "recipe": self.recipe.name}, mask=mask)
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            if len(jobs) > 1:  # retry one at a time before giving up
                for job in jobs:
                    self.run_jobs([job], job.content)
                return
            self.recorder.failed(jobs, exc, time.perf_counter() - start,
                                 self.memory_report(content))
            return
        except MemoryPlanError as exc:  # refused before any work: a batch may fit alone
            if len(jobs) > 1:
                for job in jobs:
                    self.run_jobs([job], job.content)
                return
            self.recorder.failed(jobs, exc, time.perf_counter() - start)
            return
        except Exception as exc:
            self.recorder.failed(jobs, exc, time.perf_counter() - start)
            return
        self.finish(jobs, result, time.perf_counter() - start)

    def memory_report(self, content: Any) -> str:
        """What a job that ran out of CUDA memory asked for, and what the device had.

        ``content`` is the job's content path or its batch ``(B, 3, H, W)``.
        """
        try:
            image = content if isinstance(content, torch.Tensor) else resize_longest(
                load_image(content), self.config.size)
            (count, _, h, w) = image.shape
            parts = [f"{h}x{w} px, {count} image{'s' * (count > 1)} at once",
                     f"estimated {estimate_for_recipe(self.config, h, w, count)}"]
        except Exception:  # the report must not hide the out-of-memory error
            parts = []
        if self.device.type == "cuda" and torch.cuda.is_available():
            free, total = torch.cuda.mem_get_info(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            parts.append(f"{peak / 2**30:.1f} GiB allocated at the peak, {free / 2**30:.1f} of "
                         f"{total / 2**30:.1f} GiB free on {self.device}")
        return "; ".join([*parts, "try a smaller --size or --batch-size, or --device cpu"])

    def finish(self, jobs: list[Job], result: Any, seconds: float) -> None:
        """Save each output of a stylisation, with its content image's ICC profile and
        resolution, and record it (a failed save fails its job)."""
        output = self.config.output
        options = {key: getattr(output, key) for key in SAVE_OPTIONS[self.suffix]}
        losses = result.final_losses()
        for index, job in enumerate(jobs):
            target = self.options.out / job.output
            try:
                save_image(result.image[index], target, **options,
                           **print_info(job.content).options())  # its ICC profile, dpi
                digest = file_sha256(target)
            except Exception as exc:
                self.recorder.failed([job], exc, seconds)
                continue
            extra = {"mask": self.masks.pop(job, None)} if self.config.regions is not None \
                else {}
            self.recorder.done(job, seconds, losses, size=list(result.image.shape[-2:]),
                               stages=result.stages, batch_size=len(jobs),
                               output_sha256=digest, **extra)


def run_batch(recipe: Recipe, jobs: Sequence[Job], options: RunOptions, host: PluginHost,
              report: Callable[[Outcome], None] = _ignore) -> RunSummary:
    """Run ``jobs`` (already filtered to the ones to do) and record each in the manifest.

    Intermediate images go to ``<out>/steps/`` every ``output.save_every`` steps. A failing
    job is recorded and the others go on. Other processes running the same jobs into the same
    folder share them: each job runs once (see :meth:`Runner.run`). Ctrl-C stops the run with
    ``summary.interrupted`` set; the job in progress gets no record and no output (and its
    claim is released), so a rerun or another worker does it again.
    """
    options.out.mkdir(parents=True, exist_ok=True)
    runner = Runner(recipe, options, host, report)
    preflight(recipe, runner.device, host)
    every = int(recipe.data["output"]["save_every"])
    if not every:
        return runner.run(jobs)
    with host.added(SnapshotWriter(options.out, every, runner.suffix),
                    name="nstkit.runner.snapshots"):
        return runner.run(jobs)
