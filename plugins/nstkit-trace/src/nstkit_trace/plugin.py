"""The entry-point module: traces every job into ``$NSTKIT_TRACE_DIR`` when it is set.

The directory is read when a job starts; with the variable unset or empty, nothing is written.
nstkit imports this module at start-up (every command, ``nstkit --help`` included), so it
imports no torch: the job and result types are for annotations only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from nstkit import hookimpl
from nstkit_trace.writer import LossTrace

if TYPE_CHECKING:
    from nstkit.job import JobInfo
    from nstkit.result import StyleResult

ENV = "NSTKIT_TRACE_DIR"
_trace = LossTrace(None)


@hookimpl
def on_job_start(job: JobInfo) -> None:
    _trace.directory = Path(os.environ[ENV]) if os.environ.get(ENV) else None
    _trace.on_job_start(job)


@hookimpl
def on_step(job: JobInfo, step: int, losses: Mapping[str, float]) -> None:
    _trace.on_step(job, step, losses)


@hookimpl
def on_job_end(job: JobInfo, result: StyleResult | None, error: BaseException | None) -> None:
    _trace.on_job_end(job, result, error)
