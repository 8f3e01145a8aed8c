"""The jobs of one run, shared with every other worker on the same output folder.

Each worker plans the run as usual. :class:`SharedJobs` then hands it a group of jobs only
once it has claimed them (:mod:`nstkit.runner.leases`) and found no record of them written
since the run was planned, by any worker (done, or failed: not retried in the same pass).
Jobs that another worker holds wait, and are tried again every ``POLL`` seconds until their
holder records them (dropped here), gives them up without a record (Ctrl-C: run here) or its
claim goes stale (taken over, run here). So a worker ends when every job of its plan has been
recorded by someone, and a worker killed with -9 delays its job, never loses it.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from nstkit.runner.leases import Leases
from nstkit.runner.plan import Job

POLL = 1.0  # seconds between tries of the jobs that other workers hold


class NewRecords:
    """Output -> its last record finished after ``since`` (seconds since the epoch), over every
    manifest of ``out``; each call reads only what was appended since the previous one."""

    def __init__(self, out: Path, since: float) -> None:
        self.out = out
        self.since = datetime.fromtimestamp(since, timezone.utc).isoformat(
            timespec="microseconds")  # the format of a record's ``finished``
        self.offsets: dict[Path, int] = {}
        self.found: dict[str, dict[str, Any]] = {}

    def __call__(self) -> dict[str, dict[str, Any]]:
        for path in sorted(self.out.glob("manifest*.jsonl")):  # those read_records reads
            for record in self._appended(path):
                if str(record.get("finished", "")) > self.since:
                    self.found[record["output"]] = record
        return self.found

    def _appended(self, path: Path) -> Iterable[dict[str, Any]]:
        start = self.offsets.get(path, 0)
        with path.open("rb") as handle:
            if os.fstat(handle.fileno()).st_size < start:  # replaced: read it again
                start = 0
            handle.seek(start)
            data = handle.read()
        end = data.rfind(b"\n") + 1  # a line still being written is read once it ends
        self.offsets[path] = start + end
        for line in data[:end].splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and "output" in record:
                yield record


def _ignore(job: Job, detail: str) -> None:
    """The default ``skip``: nothing."""


class SharedJobs:
    """Groups of jobs (batches sharing a style, or single jobs) handed out once claimed.

    Args:
        out: the output folder the workers share.
        groups: the groups of the run, in order.
        since: when the run was planned (``time.time()``): a record after it means the job
            was done or tried in this pass by another worker.
        skip: told each job dropped because another worker recorded it, and how
            (``"done by another worker"``).
    """

    def __init__(self, out: Path, groups: Iterable[list[Job]], since: float,
                 skip: Callable[[Job, str], None] = _ignore) -> None:
        self.leases = Leases(out)
        self.recorded = NewRecords(out, since)
        self.skip = skip
        self.queue: deque[list[Job]] = deque(groups)
        self.waiting: dict[str, Job] = {}  # held by another worker when last tried
        self.next_poll = 0.0

    def __enter__(self) -> SharedJobs:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.leases.close()

    @property
    def unfinished(self) -> bool:
        """Jobs not yet handed out, or waiting for another worker."""
        return bool(self.queue or self.waiting)

    def take(self, wait: bool = False) -> list[Job]:
        """The next group this worker now holds; ``[]`` when none is free (with ``wait``:
        only once every job is handed out or recorded by another worker)."""
        while True:
            while self.queue:
                mine = self._claim(self.queue.popleft())
                if mine:
                    return mine
            if self.waiting and time.monotonic() >= self.next_poll:
                self.next_poll = time.monotonic() + POLL
                self.queue.extend([job] for job in self.waiting.values())
                self.waiting.clear()
                continue
            if not (wait and self.waiting):
                return []
            time.sleep(max(0.0, self.next_poll - time.monotonic()))

    def release(self, jobs: Iterable[Job]) -> None:
        """The jobs are recorded (or given up): release their claims."""
        for job in jobs:
            self.leases.release(job.output)

    def _claim(self, group: list[Job]) -> list[Job]:
        """The jobs of ``group`` this worker could claim and no worker has recorded since
        the run was planned."""
        mine = []
        for job in group:
            if not self.leases.claim(job.output):
                self.waiting[job.output] = job
            elif (record := self.recorded().get(job.output)) is not None:
                self.leases.release(job.output)
                self.skip(job, f"{record.get('status', 'recorded')} by another worker")
            else:
                mine.append(job)
        return mine
