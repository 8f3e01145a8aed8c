"""The inside of a Ray actor of the ``ray`` engine: one per GPU (or CPU slot), it loads the
extractor once and runs the jobs the driver sends, returning their manifest records.

Nothing here imports Ray: :mod:`nstkit.executors.ray` wraps :class:`JobWorker` with
``ray.remote``, and the tests can drive a worker in-process.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from nstkit.hookspecs import hookimpl
from nstkit.job import JobInfo
from nstkit.plugins import get_host
from nstkit.recipe import Recipe
from nstkit.runner.execute import Outcome, Runner, RunOptions
from nstkit.runner.plan import Job
from nstkit.runner.snapshots import SnapshotWriter

Send = Callable[[tuple[Any, ...]], None]


class ProgressRelay:
    """A worker-side plugin that sends job starts and steps (at most every ``every`` seconds,
    and always the last one) to the driver through ``send`` (nowhere while it is ``None``)."""

    def __init__(self, send: Send | None = None, every: float = 0.25) -> None:
        self.send, self.every = send, every
        self.last = 0.0

    @hookimpl
    def on_job_start(self, job: JobInfo) -> None:
        self.last = time.monotonic()
        if self.send is not None:
            self.send(("start", job.name, job.iterations, job.device, tuple(job.size)))

    @hookimpl
    def on_step(self, job: JobInfo, step: int, losses: Mapping[str, float]) -> None:
        now = time.monotonic()
        if self.send is not None and (step == job.iterations or now - self.last >= self.every):
            self.last = now
            self.send(("step", job.name, step, dict(losses)))


class JobWorker:
    """Runs groups of jobs with one recipe on one device; records go back to the driver.

    Args:
        index: the worker's number (for the records).
        recipe, options: as given to the engine (paths absolute: the worker's working folder
            is not the driver's).
        plugins: extra plugin objects or module names for the worker's plugin host (installed
            entry-point plugins load anyway, as in any nstkit process).
        env: ``NSTKIT_*`` variables of the driver, set before the plugins load.
    """

    def __init__(self, index: int, recipe: Recipe, options: RunOptions,
                 plugins: Iterable[object | str] = (),
                 env: Mapping[str, str] | None = None) -> None:
        os.environ.update(env or {})
        host = get_host()
        for number, plugin in enumerate(plugins):
            host.add(plugin, name=plugin if isinstance(plugin, str) else f"worker-plugin-{number}")
        self.relay = ProgressRelay()
        host.add(self.relay, name="nstkit.executors.progress")
        self.records: list[dict[str, Any]] = []
        self.outcomes: list[Outcome] = []
        self.runner = Runner(recipe, options, host, self.outcomes.append, writer=self.records)
        self.runner.preflight()  # the extractor, once per worker
        every = int(recipe.data["output"]["save_every"])
        if every:
            host.add(SnapshotWriter(options.out, every, self.runner.suffix),
                     name="nstkit.runner.snapshots")
        self.identity = {"engine": "ray", "worker": index, "host": socket.gethostname(),
                         "pid": os.getpid(), "device": str(self.runner.device),
                         "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}

    def info(self) -> dict[str, Any]:
        """Who this worker is: host, pid, device, ``CUDA_VISIBLE_DEVICES``."""
        return dict(self.identity)

    def run(self, group: list[Job], attempt: int = 0,
            send: Send | None = None) -> list[dict[str, Any]]:
        """Run one group (one job, or a batch sharing a style); one result per job:
        ``output``, ``status``, ``seconds``, ``error``, ``losses``, ``retryable`` and the
        manifest ``record``. ``send`` takes the progress of the group's jobs.

        (``send`` comes with each call, not to the constructor: Ray cannot restart an actor
        whose constructor arguments hold an actor handle, such as a queue's.)"""
        self.relay.send = send
        self.records.clear()
        self.outcomes.clear()
        self.runner.common["worker"] = {**self.identity, "attempt": attempt}
        self.runner.run_group(group)
        return [{"output": o.job.output, "status": o.status, "seconds": o.seconds,
                 "error": o.error, "losses": o.losses, "retryable": o.retryable, "record": r}
                for o, r in zip(self.outcomes, self.records, strict=True)]
