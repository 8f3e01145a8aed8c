"""Making (or finding) every output of a comparison: one ``nstkit run`` folder per variant."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nstkit.compare.curves import CurveRecorder
from nstkit.compare.variants import Variant
from nstkit.executors import Executor, ProgressSink, ProgressTee, RunRequest
from nstkit.executors.local import LocalExecutor
from nstkit.plugins import PluginHost
from nstkit.runner.execute import InputHashes, Outcome, RunOptions, RunSummary, is_done, split_done
from nstkit.runner.manifest import latest_records
from nstkit.runner.plan import Job, plan_jobs

RUNS = "runs"


@dataclass
class Entry:
    """One variant applied to one content x style pair.

    Attributes:
        variant, job: what was asked for.
        folder: the run folder holding the output and its manifest record: ``OUT/runs/<v>/``
            or a ``--reuse`` folder.
        record: the latest manifest record of the job, ``None`` if it never ran.
        reused: the job was found done in a ``--reuse`` folder.
        judge_error: why a finished output could not be judged, if it could not.
    """

    variant: Variant
    job: Job
    folder: Path
    record: dict[str, Any] | None = None
    reused: bool = False
    judge_error: str | None = None

    @property
    def status(self) -> str:
        return (self.record or {}).get("status", "not run")

    @property
    def output(self) -> Path:
        return self.folder / self.job.output


def find_reusable(jobs: Sequence[Job], variant: Variant, reuse: Sequence[Path],
                  hashes: InputHashes) -> dict[Job, Path]:
    """The jobs already done, by the same recipe on the same inputs, in a ``reuse`` folder."""
    found: dict[Job, Path] = {}
    for folder in reuse:
        records = latest_records(folder)
        for job in jobs:
            if job not in found and is_done(job, records.get(job.output), variant.recipe,
                                            folder, hashes):
                found[job] = folder
    return found


@dataclass
class Collector:
    """Runs every variant over the same jobs, resuming its own run folders and taking outputs
    from ``reuse`` folders where their manifests show the same recipe and inputs.

    Args:
        out: the comparison folder; variant ``v`` runs in ``out/runs/<v.folder>``.
        options: run options shared by every variant (``out`` is replaced per variant).
        host: the plugin host the runs use.
        report: called with each finished job's outcome (the progress display).
        reuse: ``nstkit run`` folders whose finished outputs are taken instead of remade.
        overwrite: redo the jobs already done in the variants' own run folders.
        executor: the engine that runs the jobs (``host.executors.get(name)(address=...)``).
        progress: where the engine sends the progress of jobs it runs in other processes
            (the display); the loss curves are recorded either way.
    """

    out: Path
    options: RunOptions
    host: PluginHost
    report: Callable[[Variant, Outcome], None]
    reuse: Sequence[Path] = ()
    overwrite: bool = False
    executor: Executor = field(default_factory=LocalExecutor)
    progress: ProgressSink | None = None

    def plan(self, variant: Variant, contents: Sequence[Path],
             styles: Sequence[Path]) -> list[Job]:
        return plan_jobs(contents, styles, variant.recipe.name,
                         variant.recipe.data["output"]["format"])

    def pending(self, variant: Variant, jobs: Sequence[Job],
                hashes: InputHashes) -> tuple[list[Job], dict[Job, Path]]:
        """``(jobs to run, jobs reused from another folder)``."""
        todo, _ = split_done(jobs, variant.recipe, self.run_dir(variant), self.overwrite,
                             hashes)
        reused = {} if self.overwrite else find_reusable(todo, variant, self.reuse, hashes)
        return [job for job in todo if job not in reused], reused

    def run_dir(self, variant: Variant) -> Path:
        return self.out / RUNS / variant.folder

    def run(self, variant: Variant, jobs: Sequence[Job]) -> RunSummary:
        """Run ``jobs`` (the pending ones) of ``variant`` with the executor, recording loss
        curves: of local jobs through the lifecycle hooks, of remote ones through the
        progress the executor relays."""
        run_dir = self.run_dir(variant)
        run_dir.mkdir(parents=True, exist_ok=True)
        options = RunOptions(run_dir, self.options.device, self.options.batch_size,
                             self.options.fail_fast)
        curves = CurveRecorder(run_dir)

        def report(outcome: Outcome) -> None:
            curves.finished(outcome)
            self.report(variant, outcome)

        progress = curves if self.progress is None else ProgressTee(self.progress, curves)
        request = RunRequest(variant.recipe, jobs, options, self.host, report, progress)
        executor = variant.executor or self.executor  # a claimed variant brings its own
        with self.host.added(curves, name=f"nstkit.compare.curves.{variant.folder}"):
            return executor.run(request)

    def entries(self, variant: Variant, jobs: Sequence[Job],
                reused: dict[Job, Path]) -> list[Entry]:
        """Where each job's output and record are, after the run."""
        run_dir = self.run_dir(variant)
        own = latest_records(run_dir) if run_dir.exists() else {}
        found = {folder: latest_records(folder) for folder in set(reused.values())}
        entries = []
        for job in jobs:
            if job in reused:
                folder = reused[job]
                entries.append(Entry(variant, job, folder, found[folder][job.output], True))
            else:
                entries.append(Entry(variant, job, run_dir, own.get(job.output)))
        return entries
