"""What ``nstkit run`` shows: rich bars on a terminal, one line per job otherwise."""

from __future__ import annotations

import time
from collections.abc import Mapping

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from nstkit.hookspecs import hookimpl
from nstkit.job import JobInfo
from nstkit.progress import describe_step


class BatchDisplay:
    """An overall bar over jobs and a bar per running job over iterations (losses and speed).

    Also a plugin: the per-job bar follows the ``on_job_start`` / ``on_step`` hooks (local
    jobs, one at a time); ``job_started`` / ``job_step`` show jobs that an engine runs on other
    workers, several at a time (a :class:`nstkit.executors.ProgressSink`). With
    ``live=False`` (not a terminal, or ``--quiet``) it prints one line per finished job.
    """

    def __init__(self, console: Console, live: bool) -> None:
        self.console, self.live = console, live
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, disable=not live,
        )
        self.overall: TaskID | None = None
        self.job_tasks: dict[str, tuple[TaskID, float]] = {}  # job name -> (bar, start time)
        self.total = self.finished = 0

    def start(self, total: int, skipped: int) -> None:
        self.total = total
        if skipped:
            self.console.print(f"{skipped} job(s) already done (resuming; --overwrite redoes "
                               f"them)")
        if self.live:
            self.progress.start()
            self.overall = self.progress.add_task("jobs", total=total, info="")

    def job_finished(self, name: str, status: str, seconds: float, detail: str = "",
                     label: str | None = None) -> None:
        """One line for the job ``name`` (its bar removed), shown as ``label`` if given."""
        self.finished += 1
        if self.overall is not None:
            self.progress.update(self.overall, advance=1)
        if name in self.job_tasks:
            self.progress.remove_task(self.job_tasks.pop(name)[0])
        line = f"[{self.finished}/{self.total}] {label or name}: {status} in {seconds:.1f} s"
        self.console.print(line + (f" ({detail})" if detail else ""), highlight=False,
                           markup=False)

    def close(self) -> None:
        if self.live:
            self.progress.stop()

    @hookimpl
    def on_job_start(self, job: JobInfo) -> None:
        """A job in this process: the previous one has ended (finished, failed or not)."""
        for task, _ in self.job_tasks.values():
            self.progress.remove_task(task)
        self.job_tasks.clear()
        self.job_started(job)

    @hookimpl
    def on_step(self, job: JobInfo, step: int, losses: Mapping[str, float]) -> None:
        self.job_step(job, step, losses)

    def job_started(self, job: JobInfo) -> None:
        """A bar for ``job``, next to those of the jobs still running (on other workers)."""
        if not self.live:
            return
        if job.name in self.job_tasks:  # a retry of the same job
            self.progress.remove_task(self.job_tasks.pop(job.name)[0])
        task = self.progress.add_task(job.name, total=job.iterations, info="")
        self.job_tasks[job.name] = (task, time.perf_counter())

    def job_step(self, job: JobInfo, step: int, losses: Mapping[str, float]) -> None:
        if job.name not in self.job_tasks:
            return
        task, started = self.job_tasks[job.name]
        text, speed = describe_step(losses, step, time.perf_counter() - started)
        self.progress.update(task, completed=step, info=f"{text}  {speed}")
