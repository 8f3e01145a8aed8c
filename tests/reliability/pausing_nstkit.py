"""``nstkit ARGS`` with a plugin that pauses a run where a test can kill or interrupt it.

Run as ``python pausing_nstkit.py run ...`` with ``NSTKIT_TEST_PAUSE=JOB:MARKER``: when job
number ``JOB`` (1-based) finishes its first step, the plugin creates the file ``MARKER`` and
sleeps (up to two minutes) so the test, which waits for the marker, signals a run caught in
the middle of a job rather than one that happened to be between jobs or already finished.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from nstkit.cli import app
from nstkit.hookspecs import hookimpl
from nstkit.plugins import get_host


class PauseInJob:
    """Pauses in job ``job`` after its first step, once ``marker`` is written."""

    def __init__(self, job: int, marker: Path) -> None:
        self.job, self.marker, self.started = job, marker, 0

    @hookimpl
    def on_job_start(self) -> None:
        self.started += 1

    @hookimpl
    def on_step(self, step: int) -> None:
        if self.started == self.job and step == 1:
            self.marker.write_text(str(os.getpid()))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                time.sleep(0.05)


if __name__ == "__main__":
    # A process started in the background may inherit SIGINT ignored; a user's Ctrl-C
    # reaches nstkit with Python's default handler, so restore that.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    job, _, marker = os.environ["NSTKIT_TEST_PAUSE"].partition(":")
    get_host().add(PauseInJob(int(job), Path(marker)), name="pause-in-job")
    app(prog_name="nstkit")
