"""The CLI's rich progress display, an internal plugin on the lifecycle hooks."""

from __future__ import annotations

import time
from collections.abc import Mapping

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nstkit.hookspecs import hookimpl
from nstkit.job import JobInfo


def describe_step(losses: Mapping[str, float], step: int, seconds: float) -> tuple[str, str]:
    """``("content 1.2e+05 gram 3.4e+04 total ...", "2.50 it/s")`` for a progress bar."""
    text = " ".join(f"{name} {value:.3g}" for name, value in losses.items())
    return text, f"{step / max(seconds, 1e-9):.2f} it/s"


class ProgressDisplay:
    """A bar per job with the current losses; one line per job when not on a terminal."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[losses]}"), TextColumn("{task.fields[speed]}"),
            TimeElapsedColumn(), console=self.console, disable=not self.live,
        )
        self.task = None
        self.started = 0.0

    @hookimpl
    def on_job_start(self, job: JobInfo) -> None:
        self.started = time.perf_counter()
        if self.live:
            self.progress.start()
            self.task = self.progress.add_task(job.name, total=job.iterations, losses="",
                                               speed="")

    @hookimpl
    def on_step(self, job: JobInfo, step: int, losses: Mapping[str, float]) -> None:
        if self.task is None:
            return
        text, speed = describe_step(losses, step, time.perf_counter() - self.started)
        self.progress.update(self.task, completed=step, losses=text, speed=speed)

    @hookimpl
    def on_job_end(self, job: JobInfo, result, error) -> None:
        if self.live:
            self.progress.stop()
            self.task = None
        status = "failed" if error is not None else "done"
        elapsed = time.perf_counter() - self.started
        self.console.print(f"{job.name}: {status} in {elapsed:.1f} s"
                           + (f" ({error})" if error is not None else ""))
