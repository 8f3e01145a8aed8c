"""What ``nstkit run`` shows: rich bars on a terminal, one line per job otherwise."""

from __future__ import annotations

import time
from collections.abc import Mapping

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from nstkit.eta import JobClock, StepCosts
from nstkit.hookspecs import hookimpl
from nstkit.job import JobInfo
from nstkit.progress import describe_step

# a job bar's length: its expected time in thousandths (steps weigh what they cost)
WORK = 1000


def clock_text(seconds: float | None) -> str:
    """``"eta 1:02:03"``, ``"eta 4:05"``, or ``"eta -:--"`` while unknown."""
    if seconds is None:
        return "eta -:--"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"eta {hours}:{minutes:02d}:{secs:02d}" if hours else f"eta {minutes}:{secs:02d}"


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
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"), console=console, disable=not live,
        )
        self.overall: TaskID | None = None
        # job name -> (bar, start time, clock); the step costs are shared by all the jobs
        self.job_tasks: dict[str, tuple[TaskID, float, JobClock]] = {}
        self.costs = StepCosts()
        self.total = self.finished = 0
        self.started = time.perf_counter()

    def start(self, total: int, skipped: int) -> None:
        self.total = total
        if skipped:
            self.console.print(f"{skipped} job(s) already done (resuming; --overwrite redoes "
                               f"them)")
        self.started = time.perf_counter()
        if self.live:
            self.progress.start()
            self.overall = self.progress.add_task("jobs", total=total, info="",
                                                  count=f"0/{total}", eta="")

    def job_finished(self, name: str, status: str, seconds: float, detail: str = "",
                     label: str | None = None) -> None:
        """One line for the job ``name`` (its bar removed), shown as ``label`` if given."""
        self.finished += 1
        if self.overall is not None:
            spent = time.perf_counter() - self.started
            self.progress.update(self.overall, advance=1, count=f"{self.finished}/{self.total}",
                                 eta=clock_text(spent / self.finished
                                                * (self.total - self.finished)))
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
        for task, *_ in self.job_tasks.values():
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
        task = self.progress.add_task(job.name, total=WORK, info="",
                                      count=f"0/{job.iterations}", eta=clock_text(None))
        clock = JobClock(job.stages or ((1.0, job.iterations),), job.size, self.costs, 0.0)
        self.job_tasks[job.name] = (task, time.perf_counter(), clock)

    def job_step(self, job: JobInfo, step: int, losses: Mapping[str, float]) -> None:
        if job.name in self.job_tasks:
            self.job_step_at(job, step, losses, time.perf_counter() - self.job_tasks[job.name][1])

    def job_step_at(self, job: JobInfo, step: int, losses: Mapping[str, float],
                    seconds: float) -> None:
        """Step ``step`` of ``job`` reached ``seconds`` after it started."""
        if job.name not in self.job_tasks:
            return
        task, _, clock = self.job_tasks[job.name]
        while clock.done < step:
            clock.step(seconds)
        text, speed = describe_step(losses, step, seconds)
        self.progress.update(task, completed=WORK * clock.fraction(), info=f"{text}  {speed}",
                             count=f"{step}/{job.iterations}", eta=clock_text(clock.remaining()))
