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

from nstkit.components import resolve_device
from nstkit.hookspecs import hookimpl
from nstkit.job import JobInfo
from nstkit.optimisation import StyleCache
from nstkit.plugins import get_host
from nstkit.recipe import Recipe
from nstkit.runner.execute import Runner, RunOptions, preflight
from nstkit.runner.plan import Job
from nstkit.runner.record import InputHashes, JobRecorder, Outcome
from nstkit.runner.snapshots import SnapshotWriter

Send = Callable[[tuple[Any, ...]], None]
Step = tuple[int, float, dict[str, float]]  # step, seconds since the job started, losses


class ProgressRelay:
    """A worker-side plugin that sends job starts and every step to the driver through
    ``send`` (nowhere while it is ``None``).

    A start goes at once: ``("start", name, iterations, device, size, extra, stages)``
    (``extra``: the job's ``outputs`` and ``recipe``; ``stages``: its plan). Steps go in
    batches, at most every ``every`` seconds and when the job ends: ``("steps", name,
    [(step, seconds, losses), ...])``, the seconds measured here since the job started.
    """

    def __init__(self, send: Send | None = None, every: float = 0.25) -> None:
        self.send, self.every = send, every
        self.started = self.sent = 0.0
        self.steps: list[Step] = []

    @hookimpl
    def on_job_start(self, job: JobInfo) -> None:
        self.steps = []
        self.started = self.sent = time.monotonic()
        if self.send is not None:
            extra = {key: job.extra[key] for key in ("outputs", "recipe") if key in job.extra}
            self.send(("start", job.name, job.iterations, job.device, tuple(job.size), extra,
                       tuple(job.stages)))

    @hookimpl
    def on_step(self, job: JobInfo, step: int, losses: Mapping[str, float]) -> None:
        now = time.monotonic()
        self.steps.append((step, now - self.started, dict(losses)))
        if step == job.iterations or now - self.sent >= self.every:
            self.flush(job)

    @hookimpl
    def on_job_end(self, job: JobInfo) -> None:
        self.flush(job)

    def flush(self, job: JobInfo) -> None:
        """Send the steps not sent yet."""
        if self.steps and self.send is not None:
            self.send(("steps", job.name, self.steps))
        self.steps = []
        self.sent = time.monotonic()


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
        self.host = host = get_host()
        for number, plugin in enumerate(plugins):
            host.add(plugin, name=plugin if isinstance(plugin, str) else f"worker-plugin-{number}")
        self.relay = ProgressRelay()
        host.add(self.relay, name="nstkit.executors.progress")
        self.recipe, self.options = recipe, options
        self.device = resolve_device(options.device)
        preflight(recipe, self.device, host)  # the extractor, once per worker
        self.cache, self.hashes = StyleCache(), InputHashes()
        every = int(recipe.data["output"]["save_every"])
        if every:
            host.add(SnapshotWriter(options.out, every, recipe.data["output"]["format"]),
                     name="nstkit.runner.snapshots")
        self.identity = {"engine": "ray", "worker": index, "host": socket.gethostname(),
                         "pid": os.getpid(), "device": str(self.device),
                         "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}

    def info(self) -> dict[str, Any]:
        """Who this worker is: host, pid, device, ``CUDA_VISIBLE_DEVICES``."""
        return dict(self.identity)

    def recorder(self, attempt: int, records: list[dict[str, Any]],
                 outcomes: list[Outcome]) -> JobRecorder:
        """Records of attempt ``attempt`` into ``records``, their outcomes into ``outcomes``."""
        return JobRecorder(self.recipe, str(self.device), records, outcomes.append,
                           shard=self.options.shard, hashes=self.hashes,
                           worker={**self.identity, "attempt": attempt})

    def run(self, group: list[Job], attempt: int = 0,
            send: Send | None = None) -> list[dict[str, Any]]:
        """Run one group (one job, or a batch sharing a style); one result per job:
        ``output``, ``status``, ``seconds``, ``error``, ``losses``, ``retryable`` and the
        manifest ``record``. ``send`` takes the progress of the group's jobs. The driver has
        claimed the group's jobs (:mod:`nstkit.runner.leases`): a worker claims nothing.

        (``send`` comes with each call, not to the constructor: Ray cannot restart an actor
        whose constructor arguments hold an actor handle, such as a queue's.)"""
        self.relay.send = send
        records: list[dict[str, Any]] = []
        outcomes: list[Outcome] = []
        recorder = self.recorder(attempt, records, outcomes)
        Runner(self.recipe, self.options, self.host, recorder=recorder,
               cache=self.cache).run_group(group)
        return [{"output": o.job.output, "status": o.status, "seconds": o.seconds,
                 "error": o.error, "losses": o.losses, "retryable": o.retryable, "record": r}
                for o, r in zip(outcomes, records, strict=True)]
