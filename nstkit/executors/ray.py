"""The ``ray`` engine: the driver (this process) hands jobs to Ray actors, one per GPU (CPU
actors when the cluster has none), a few in flight per actor, and writes each result into the
manifest as it arrives.

Failures: a transient job error (CUDA out of memory, I/O) is retried up to ``max_retries``
times; a crashed worker is restarted by Ray (up to ``max_restarts`` times) and the job it was
running is retried, counted as an attempt; a permanent error (unreadable image, bad recipe)
is recorded once and never retried. A failed job never stops the run (unless ``--fail-fast``).
Outputs are written by the workers atomically (temporary file, then rename), so two workers
finishing the same job waste time but never leave a corrupt file.

The driver claims every job before it hands it out and releases it once its record is written
(:class:`nstkit.runner.sharing.SharedJobs`), so a Ray run shares the folder with other runs,
Ray or local, like a local run does; a job in retry stays claimed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, RayActorError, RayError
from ray.util.queue import Queue

from nstkit.components import resolve_device
from nstkit.errors import NstkitError
from nstkit.executors import RunRequest, tell_step
from nstkit.executors.ray_worker import JobWorker
from nstkit.job import JobInfo
from nstkit.runner.execute import group_jobs
from nstkit.runner.manifest import ManifestWriter
from nstkit.runner.plan import Job
from nstkit.runner.record import JobRecorder, Outcome, RunSummary
from nstkit.runner.sharing import SharedJobs


class WorkerCrashError(RuntimeError):
    """A Ray worker died (killed, segfault, out of host memory) while running the job."""


@dataclass
class _Flight:
    """Jobs sent to one actor in one call."""

    actor: int
    jobs: list[Job]
    attempt: int


def _absolute(job: Job) -> Job:
    return dataclasses.replace(job, content=job.content.resolve(), style=job.style.resolve())


def short_error(exc: BaseException) -> str:
    """The last non-blank line of ``exc``'s message (Ray's are long), at most 300 characters."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(exc).__name__


def connect(address: str | None) -> bool:
    """Connect to the Ray cluster at ``address`` (``None``: ``RAY_ADDRESS``, else a new local
    cluster, never a stale one); True when this call started the session, which the caller
    then shuts down. A session already initialised in this process is used as it is.

    Raises:
        NstkitError: the cluster cannot be reached or started.
    """
    if ray.is_initialized():
        return False
    where = address or os.environ.get("RAY_ADDRESS") or "local"
    try:
        ray.init(address=where, include_dashboard=False, logging_level=logging.WARNING,
                 configure_logging=True)
    except Exception as exc:  # Ray raises ConnectionError, ValueError, RuntimeError...
        name = "a new local cluster" if where == "local" else repr(where)
        raise NstkitError(f"--engine ray: cannot connect to {name}: {short_error(exc)} (start "
                          f"a cluster with 'ray start --head', or leave out --address to start "
                          f"a local one)") from None
    return True


def task_options(device: str) -> dict[str, int]:
    """What one Ray task or actor running nstkit's jobs on ``device`` asks the cluster for:
    ``{"num_gpus": 1}`` on a cluster with GPUs unless ``device`` is ``cpu``, else
    ``{"num_cpus": 1}``. Needs a connected session (:func:`connect`).

    Args:
        device: the run's ``--device``: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        NstkitError: ``device`` is a CUDA one and the cluster has no GPU.
    """
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if device.startswith("cuda") and not gpus:
        raise NstkitError(f"--device {device}: the Ray cluster has no GPU")
    return {"num_gpus": 1} if gpus and device != "cpu" else {"num_cpus": 1}


def worker_env() -> dict[str, str]:
    """The ``NSTKIT_*`` variables of this process (``NSTKIT_DEBUG``, the plugin switches such
    as ``NSTKIT_DISABLE_PLUGIN_AUTOLOAD``...), for a Ray worker to set before it builds its
    plugin host: a cluster's workers do not inherit the driver's environment."""
    return {key: value for key, value in os.environ.items() if key.startswith("NSTKIT_")}


class RayExecutor:
    """Runs jobs on Ray actors.

    Args:
        address: a cluster to connect to (``auto``, ``ray://host:10001``, ``host:6379``);
            ``None`` connects to the cluster of ``RAY_ADDRESS`` or, without one, starts a local
            cluster for this run. A Ray session already initialised in this process is used
            as it is.
        actors: how many actors; ``None``: one per GPU, or one per CPU without GPUs.
        in_flight: jobs queued at each actor, so it never waits for the driver.
        max_retries: retries of a job after a transient error or a worker crash.
        max_restarts: restarts of each actor after a crash.
        plugins: extra plugin objects or module names for the workers' plugin hosts.
    """

    def __init__(self, *, address: str | None = None, actors: int | None = None,
                 in_flight: int = 2, max_retries: int = 2, max_restarts: int = 3,
                 plugins: Iterable[object | str] = ()) -> None:
        self.address, self.actors, self.in_flight = address, actors, max(1, in_flight)
        self.max_retries, self.max_restarts = max_retries, max_restarts
        self.plugins = list(plugins)

    def run(self, request: RunRequest) -> RunSummary:
        if not request.jobs:
            return RunSummary()
        started = connect(self.address)
        try:
            return _Driver(self, request).run()
        finally:
            if started:
                ray.shutdown()


class _Driver:
    """One run of the Ray engine: actors, the queue of work, results into the manifest."""

    def __init__(self, engine: RayExecutor, request: RunRequest) -> None:
        self.engine, self.request = engine, request
        recipe, options = request.recipe, request.options
        # writes the workers' records, records the failures they could not (crashes) and
        # collects the outcomes
        self.recorder = JobRecorder(recipe, str(resolve_device(options.device)),
                                    ManifestWriter(options.out, options.shard), request.report,
                                    shard=options.shard, worker={"engine": "ray"})
        self.groups = group_jobs(request.jobs, recipe, options.batch_size)
        self.shared = SharedJobs(options.out, self.groups, options.planned_at, self.skipped)
        self.work: deque[tuple[list[Job], int]] = deque()  # claimed: new ones and retries
        self.pending: dict[Any, _Flight] = {}
        self.queues: list[deque[Any]] = []
        self.crashes: list[int] = []
        self.state: list[str] = []  # per actor: "ok", "restarting" (probed until back), "dead"
        self.probes: dict[Any, int] = {}
        self.next_probe: dict[int, float] = {}
        self.jobs = {job.output: job for job in request.jobs}
        self.infos: dict[str, JobInfo] = {}
        self.progress = Queue() if request.progress is not None else None
        self.actors: list[Any] = []

    @property
    def summary(self) -> RunSummary:
        return self.recorder.summary

    def resources(self) -> tuple[int, dict[str, int]]:
        """How many actors and what each asks Ray for."""
        ask = task_options(self.request.options.device)
        total = ray.cluster_resources()
        count = max(1, int(total.get("GPU" if "num_gpus" in ask else "CPU", 1)))
        return min(self.engine.actors or count, len(self.groups)), ask

    def start_actors(self) -> None:
        count, ask = self.resources()
        options = dataclasses.replace(self.request.options,
                                      out=self.request.options.out.resolve())
        if options.device.startswith("cuda"):
            options.device = "cuda"  # each actor sees its own GPU as cuda:0
        env = worker_env()
        remote = ray.remote(JobWorker).options(max_restarts=self.engine.max_restarts,
                                               max_task_retries=0, **ask)
        self.actors = [remote.remote(index, self.request.recipe, options, self.engine.plugins,
                                     env) for index in range(count)]
        self.queues = [deque() for _ in self.actors]
        self.crashes = [0] * count
        self.state = ["ok"] * count
        try:
            ray.get([actor.info.remote() for actor in self.actors])
        except RayError as exc:
            raise NstkitError(f"the Ray workers could not start: {short_error(exc)}") from None

    def run(self) -> RunSummary:
        try:
            with self.shared:  # releases the claims still held, however the run ends
                self.start_actors()
                self.loop()
        except KeyboardInterrupt:
            self.summary.interrupted = True
        finally:
            for actor in self.actors:
                ray.kill(actor, no_restart=True)
            if self.progress is not None:
                self.progress.shutdown()
        return self.summary

    def skipped(self, job: Job, detail: str) -> None:
        """``job`` was recorded by another worker on the folder (``detail``: how)."""
        self.recorder.add(Outcome(job, "skipped", error=detail))

    def next_work(self) -> bool:
        """Claim the next free group into ``work`` if it is empty; False when none is."""
        if not self.work:
            group = self.shared.take()
            if group:
                self.work.append((group, 0))
        return bool(self.work)

    def give_up(self, jobs: list[Job], exc: BaseException) -> None:
        """Record ``jobs`` as failed and release them."""
        self.recorder.failed(jobs, exc, 0.0)
        self.shared.release(jobs)

    def submit(self) -> None:
        """Top up every working actor to ``in_flight`` calls."""
        for index in (i for i, state in enumerate(self.state) if state == "ok"):
            while len(self.queues[index]) < self.engine.in_flight and self.next_work():
                group, attempt = self.work.popleft()
                send = self.progress.put_nowait if self.progress is not None else None
                ref = self.actors[index].run.remote([_absolute(job) for job in group], attempt,
                                                    send)
                self.pending[ref] = _Flight(index, group, attempt)
                self.queues[index].append(ref)

    def loop(self) -> None:
        while self.work or self.pending or self.shared.unfinished:
            if self.request.options.fail_fast and self.summary.count("failed"):
                return
            self.submit()
            self.probe()
            if all(state == "dead" for state in self.state):
                died = WorkerCrashError(
                    f"every Ray worker died ({self.engine.max_restarts} restarts each)")
                while self.next_work():  # the free jobs too (those other workers hold: not)
                    self.give_up(self.work.popleft()[0], died)
                return
            waiting = [*self.pending, *self.probes]
            if not waiting:  # restarting actors, or jobs other workers hold: look again soon
                time.sleep(0.05)
                continue
            polling = (self.progress is not None or "restarting" in self.state
                       or bool(self.shared.waiting))
            ready, _ = ray.wait(waiting, num_returns=1, timeout=0.1 if polling else None)
            self.relay_progress()
            for ref in ready:
                if ref in self.probes:
                    self.probed(ref)
                else:
                    self.finished(ref)

    def restarting(self, index: int) -> None:
        """Stop sending work to actor ``index`` until a probe finds it back."""
        if self.state[index] == "ok":
            self.state[index] = "restarting"
            self.next_probe[index] = time.monotonic()

    def probe(self) -> None:
        """Ask each restarting actor (at most every 0.25 s) whether it is back."""
        probing = set(self.probes.values())
        for index, state in enumerate(self.state):
            if state == "restarting" and index not in probing \
                    and time.monotonic() >= self.next_probe[index]:
                self.probes[self.actors[index].info.remote()] = index

    def probed(self, ref: Any) -> None:
        index = self.probes.pop(ref)
        try:
            ray.get(ref)
        except ActorUnavailableError:
            self.next_probe[index] = time.monotonic() + 0.25
        except RayError:
            self.state[index] = "dead"
        else:
            self.state[index] = "ok"

    def finished(self, ref: Any) -> None:
        flight = self.pending.pop(ref)
        queue = self.queues[flight.actor]
        was_running = queue[0] == ref  # an actor runs its calls in order: the oldest one ran
        queue.remove(ref)
        try:
            results = ray.get(ref)
        except RayActorError as exc:  # Ray says "unavailable" for the calls of a crashed actor
            self.crashed(flight, was_running, exc)
            return
        except RayError as exc:  # the worker code itself raised: not worth a retry
            self.give_up(flight.jobs, WorkerCrashError(short_error(exc)))
            return
        for item in results:
            self.result(flight, item)

    def crashed(self, flight: _Flight, was_running: bool, exc: BaseException) -> None:
        """The actor died: no more work for it until it is back; retry the job it was running
        (one attempt spent) and requeue the ones waiting behind it (no attempt spent)."""
        self.restarting(flight.actor)
        if not was_running:
            self.work.appendleft((flight.jobs, flight.attempt))
            return
        self.crashes[flight.actor] += 1
        if self.crashes[flight.actor] > self.engine.max_restarts:
            self.state[flight.actor] = "dead"
        if flight.attempt >= self.engine.max_retries:
            self.give_up(flight.jobs, WorkerCrashError(
                f"the Ray worker died {flight.attempt + 1} times running this job: "
                f"{short_error(exc)}"))
            return
        self.work.appendleft((flight.jobs, flight.attempt + 1))

    def result(self, flight: _Flight, item: dict[str, Any]) -> None:
        job = self.jobs[item["output"]]
        if item["status"] == "failed" and item["retryable"] \
                and flight.attempt < self.engine.max_retries:
            self.work.append(([job], flight.attempt + 1))
            return
        self.recorder.add(Outcome(job, item["status"], item["seconds"], item["error"],
                                  item["losses"], item["retryable"]), item["record"])
        self.shared.release([job])

    def relay_progress(self) -> None:
        """Pass the workers' job starts and every step on to the request's progress sink."""
        sink = self.request.progress
        if self.progress is None or sink is None:
            return
        for event in self.progress.get_nowait_batch(self.progress.qsize()):
            if event[0] == "start":
                _, name, iterations, device, size, extra, stages = event
                self.infos[name] = JobInfo(name, iterations, device, size, extra, stages)
                sink.job_started(self.infos[name])
            elif event[0] == "steps" and event[1] in self.infos:
                for step, seconds, losses in event[2]:
                    tell_step(sink, self.infos[event[1]], step, losses, seconds)
