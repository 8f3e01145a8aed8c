"""Loss curves recorded during a run: every step's losses and the seconds since the start."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nstkit.atomic import write_atomic
from nstkit.hookspecs import hookimpl
from nstkit.job import JobInfo
from nstkit.runner.record import Outcome

CURVES = "curves"


@dataclass
class Curve:
    """One job's losses: ``losses[term][i]`` is the weighted value of each term (and
    ``total``) for the image after ``steps[i]`` steps, reached ``seconds[i]`` after the job
    started (the first point is the initial image at 0 s)."""

    steps: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    losses: dict[str, list[float]] = field(default_factory=dict)

    def add(self, step: int, seconds: float, losses: Mapping[str, float]) -> None:
        self.steps.append(step)
        self.seconds.append(round(seconds, 4))
        for name, value in losses.items():
            self.losses.setdefault(name, []).append(float(value))


def curve_path(run_dir: Path, output: str) -> Path:
    """Where the curve of ``output`` lives: ``<run_dir>/curves/<output>.json``."""
    return run_dir / CURVES / f"{output}.json"


def read_curve(run_dir: Path, output: str) -> Curve | None:
    """The recorded curve, or ``None`` when there is none (an output made by ``nstkit run``)
    or it cannot be read."""
    try:
        data = json.loads(curve_path(run_dir, output).read_text(encoding="utf-8"))
        return Curve(list(data["steps"]), list(data["seconds"]), dict(data["losses"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass
class _Running:
    """The curve of a job in progress (a batch's jobs share one)."""

    iterations: int
    started: float  # time.perf_counter() at the start, for steps told without their time
    curve: Curve = field(default_factory=Curve)
    last: float = 0.0  # seconds at which the image of the last step was reached


class CurveRecorder:
    """Writes the loss curve of each finished job next to its output (atomically).

    It follows jobs two ways: as a plugin (``on_job_start``, ``on_step``) for the jobs that
    run in this process, and as a :class:`nstkit.executors.TimedProgressSink` for those an
    engine runs elsewhere. Either way :meth:`finished`, given each job's outcome, writes the
    curve of a job that is done (the last point: the outcome's final losses).
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.running: dict[str, _Running] = {}  # job name -> its curve so far
        self.owners: dict[str, str] = {}  # output -> the job name it is made under

    @hookimpl
    def on_job_start(self, job: JobInfo) -> None:
        self.job_started(job)

    @hookimpl
    def on_step(self, job: JobInfo, step: int, losses: Mapping[str, float]) -> None:
        self.job_step(job, step, losses)

    def job_started(self, job: JobInfo) -> None:
        """A job (or a retry of it) starts: a new curve for each of its outputs."""
        self.running[job.name] = _Running(job.iterations, time.perf_counter())
        for output in job.extra.get("outputs", [job.name]):
            self.owners[output] = job.name

    def job_step(self, job: JobInfo, step: int, losses: Mapping[str, float]) -> None:
        """A step, timed now."""
        running = self.running.get(job.name)
        if running is not None:
            self.job_step_at(job, step, losses, time.perf_counter() - running.started)

    def job_step_at(self, job: JobInfo, step: int, losses: Mapping[str, float],
                    seconds: float) -> None:
        """A step, reached ``seconds`` after the job started."""
        running = self.running.get(job.name)
        if running is None:
            return
        # the losses of step k belong to the image step k started from
        running.curve.add(step - 1, running.last, losses)
        running.last = seconds

    def finished(self, outcome: Outcome) -> None:
        """Write the curve of a job that is done; forget that of one that failed."""
        name = self.owners.pop(outcome.job.output, None)
        if name is None:
            return
        running = self.running[name]
        if name not in self.owners.values():  # the last job of its batch
            del self.running[name]
        if outcome.status != "done":
            return
        curve = copy.deepcopy(running.curve)
        curve.add(running.iterations, running.last, outcome.losses)
        target = curve_path(self.run_dir, outcome.job.output)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, json.dumps(curve.__dict__))
