"""Loss curves recorded during a run: every step's losses and the seconds since the start."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nstkit.atomic import write_atomic
from nstkit.hookspecs import hookimpl
from nstkit.job import JobInfo
from nstkit.result import StyleResult

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


class CurveRecorder:
    """A plugin writing each finished job's curve next to its outputs (atomically)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.curve, self.started, self.last = Curve(), 0.0, 0.0

    @hookimpl
    def on_job_start(self, job: JobInfo) -> None:
        self.curve, self.started, self.last = Curve(), time.perf_counter(), 0.0

    @hookimpl
    def on_step(self, job: JobInfo, step: int, losses: Mapping[str, float]) -> None:
        # the losses of step k belong to the image step k started from
        self.curve.add(step - 1, self.last, losses)
        self.last = time.perf_counter() - self.started

    @hookimpl
    def on_job_end(self, job: JobInfo, result: StyleResult | None) -> None:
        if result is None:
            return
        self.curve.add(result.iterations, self.last, result.final_losses())
        (self.run_dir / CURVES).mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.curve.__dict__)
        for output in job.extra.get("outputs", [job.name]):
            write_atomic(curve_path(self.run_dir, output), text)
