"""Engines that run the planned jobs of ``nstkit run``: ``local`` (this process) and ``ray``
(actors on a Ray cluster), registered through the ``register_executors`` hook like any plugin.

An engine receives a :class:`RunRequest` (the jobs still to do, the recipe, the options and the
plugin host) and returns a :class:`nstkit.runner.RunSummary`. It records every job it finishes
or gives up on in the manifest of ``options.out`` and calls ``request.report`` once per job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from nstkit.job import JobInfo
    from nstkit.plugins import PluginHost
    from nstkit.recipe import Recipe
    from nstkit.runner.execute import Outcome, RunOptions, RunSummary
    from nstkit.runner.plan import Job


class ProgressSink(Protocol):
    """Receives the progress of jobs that run in other processes, several at a time, so a
    display on the driver can show them (what ``on_job_start`` and ``on_step`` tell about local
    jobs, without the image). Every step of a job is told, in order, but they may arrive a few
    at a time."""

    def job_started(self, job: JobInfo) -> None: ...

    def job_step(self, job: JobInfo, step: int, losses: Mapping[str, float]) -> None: ...


@runtime_checkable
class TimedProgressSink(ProgressSink, Protocol):
    """A progress sink that wants to know when each step was reached: ``seconds`` since the
    job started, measured where it runs (the driver's clock would add the relay's delays).
    Engines tell such a sink ``job_step_at`` instead of ``job_step`` (see :func:`tell_step`).
    """

    def job_step_at(self, job: JobInfo, step: int, losses: Mapping[str, float],
                    seconds: float) -> None: ...


def tell_step(sink: ProgressSink, job: JobInfo, step: int, losses: Mapping[str, float],
              seconds: float) -> None:
    """Tell ``sink`` a step of a remote job, with its time if the sink takes it."""
    if isinstance(sink, TimedProgressSink):
        sink.job_step_at(job, step, losses, seconds)
    else:
        sink.job_step(job, step, losses)


class ProgressTee:
    """Several progress sinks as one (a display and a loss-curve recorder, say); each is told
    everything, in the order given."""

    def __init__(self, *sinks: ProgressSink) -> None:
        self.sinks = sinks

    def job_started(self, job: JobInfo) -> None:
        for sink in self.sinks:
            sink.job_started(job)

    def job_step(self, job: JobInfo, step: int, losses: Mapping[str, float]) -> None:
        for sink in self.sinks:
            sink.job_step(job, step, losses)

    def job_step_at(self, job: JobInfo, step: int, losses: Mapping[str, float],
                    seconds: float) -> None:
        for sink in self.sinks:
            tell_step(sink, job, step, losses, seconds)


def _ignore(outcome: Outcome) -> None:
    """The default ``report``: nothing."""


@dataclass
class RunRequest:
    """Everything an engine needs to run a batch.

    Attributes:
        recipe: the resolved recipe.
        jobs: the jobs to run (finished ones already dropped).
        options: output folder, device, batch size, fail-fast, shard.
        host: the plugin host of the driver (its lifecycle plugins see local jobs).
        report: called once per job that finished or failed, as it happens.
        progress: where engines that run jobs in other processes send their progress.
    """

    recipe: Recipe
    jobs: Sequence[Job]
    options: RunOptions
    host: PluginHost
    report: Callable[[Outcome], None] = _ignore
    progress: ProgressSink | None = None


class Executor(Protocol):
    """An engine: runs a :class:`RunRequest` and returns its summary."""

    def run(self, request: RunRequest) -> RunSummary: ...


__all__ = ["Executor", "ProgressSink", "ProgressTee", "RunRequest", "TimedProgressSink",
           "tell_step"]
