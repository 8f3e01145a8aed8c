"""Write one CSV of loss values per stylisation job, from nstkit's lifecycle hooks."""

from __future__ import annotations

import csv
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from nstkit import hookimpl

if TYPE_CHECKING:  # nstkit.result imports torch; the hooks only read what they are given
    from nstkit.job import JobInfo
    from nstkit.result import StyleResult


def trace_path(directory: Path, job: JobInfo) -> Path:
    """``<directory>/<job name>.losses.csv``, the name reduced to safe characters."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(job.name).name) or "job"
    return directory / f"{stem}.losses.csv"


@dataclass
class _Open:
    file: IO[str]
    writer: Any
    start: float
    columns: list[str] | None = None


class LossTrace:
    """A plugin object writing ``<job name>.losses.csv`` into ``directory`` for every job.

    Row ``step = k`` holds the weighted loss of every term and the total for the image after
    ``k`` steps (row 0: the initial image; the last row, written when the job succeeds: the
    result), and ``seconds``, the time since the job started when the row was written. A
    failed job keeps the rows written until it failed.

    Args:
        directory: where the CSV files go (created if needed); ``None`` writes nothing.
    """

    def __init__(self, directory: str | Path | None) -> None:
        self.directory = Path(directory) if directory is not None else None
        self._jobs: dict[int, _Open] = {}

    def _row(self, job: JobInfo, step: int, losses: Mapping[str, float]) -> None:
        state = self._jobs.get(id(job))
        if state is None:
            return
        if state.columns is None:
            state.columns = list(losses)
            state.writer.writerow(["step", "seconds", *state.columns])
        values = [f"{losses[name]:.9g}" for name in state.columns]
        state.writer.writerow([step, f"{time.perf_counter() - state.start:.3f}", *values])
        state.file.flush()

    @hookimpl
    def on_job_start(self, job: JobInfo) -> None:
        if self.directory is None:
            return
        path = trace_path(self.directory, job)
        path.parent.mkdir(parents=True, exist_ok=True)
        file = path.open("w", newline="", encoding="utf-8")
        self._jobs[id(job)] = _Open(file, csv.writer(file), time.perf_counter())

    @hookimpl
    def on_step(self, job: JobInfo, step: int, losses: Mapping[str, float]) -> None:
        self._row(job, step - 1, losses)  # the losses of the image the step started from

    @hookimpl
    def on_job_end(self, job: JobInfo, result: StyleResult | None,
                   error: BaseException | None) -> None:
        if result is not None and id(job) in self._jobs:
            self._row(job, result.iterations, result.final_losses())
        state = self._jobs.pop(id(job), None)
        if state is not None:
            state.file.close()
