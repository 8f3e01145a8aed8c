"""Engines as plugins: the ``register_executors`` hook, ``--engine`` and ``--address``
errors, Ray imported only when used, and which failures count as transient."""

from __future__ import annotations

import errno
import subprocess
import sys
import types
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from PIL import UnidentifiedImageError

import nstkit
from nstkit.default_plugins.executors import ray_executor
from nstkit.errors import NstkitError, PluginError
from nstkit.executors import RunRequest
from nstkit.executors.local import LocalExecutor, local_executor
from nstkit.plugins import get_host
from nstkit.runner.execute import RunSummary, run_batch
from nstkit.runner.failures import is_transient


class EveryOtherJob:
    """A toy engine: runs only the even-numbered jobs, locally; remembers its requests."""

    requests: ClassVar[list[RunRequest]] = []

    def __init__(self, address: str | None) -> None:
        self.address = address

    def run(self, request: RunRequest) -> RunSummary:
        EveryOtherJob.requests.append(request)
        return run_batch(request.recipe, request.jobs[::2], request.options, request.host,
                         request.report)


@pytest.mark.slow
def test_hook_register_executors(tmp_path: Path, invoke, records, run_tiny) -> None:
    registered: list[int] = []

    def register_executors(register):
        registered.append(1)
        register("every-other", lambda *, address=None: EveryOtherJob(address),
                 description="half the jobs")

    plugin = types.SimpleNamespace(register_executors=nstkit.hookimpl(register_executors))
    get_host().add(plugin, name="toy-engine")
    assert registered == []  # lazily: not when the plugin is registered
    listing = invoke("plugins")
    assert "executor: every-other" in listing.output
    assert "executor: local, ray" in listing.output
    EveryOtherJob.requests.clear()
    result = run_tiny(tmp_path / "out", "--engine", "every-other", "--address", "x:1")
    assert result.exit_code == 0, result.output
    [request] = EveryOtherJob.requests
    assert len(request.jobs) == 4
    assert request.progress is not None  # the display, for engines that run jobs elsewhere
    assert len(records(tmp_path / "out")) == 2
    assert registered == [1]


def test_the_local_engine_is_the_default_and_takes_no_address(tmp_path: Path,
                                                              run_tiny) -> None:
    assert isinstance(get_host().executors.get("local")(), LocalExecutor)
    result = run_tiny(tmp_path / "out", "--address", "auto")
    assert result.exit_code == 2
    assert "--address is for engines that connect to a cluster (--engine ray)" in result.output
    assert not (tmp_path / "out").exists()
    with pytest.raises(NstkitError, match="--address"):
        local_executor(address="auto")


def test_an_unknown_engine_is_a_usage_error(tmp_path: Path, run_tiny) -> None:
    result = run_tiny(tmp_path / "out", "--engine", "rya")
    assert result.exit_code == 2
    assert "unknown executor 'rya'. Did you mean 'ray'? Available: local, ray." in result.output


def test_engine_ray_rejects_a_numbered_gpu(tmp_path: Path, run_tiny) -> None:
    result = run_tiny(tmp_path / "out", "--engine", "ray", "--device", "cuda:1")
    assert result.exit_code == 2
    assert "--device with --engine ray must be auto, cpu or cuda" in result.output


@pytest.mark.slow
def test_listing_the_engines_does_not_import_ray() -> None:
    code = ("import sys, nstkit.cli; from nstkit.plugins import get_host; "
            "print(get_host().executors.names(), 'ray' in sys.modules)")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=120)
    assert shown.stdout.split() == ["['local',", "'ray']", "False"], shown.stderr


def test_without_ray_the_ray_engine_says_how_to_install_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_tiny) -> None:
    monkeypatch.delitem(sys.modules, "nstkit.executors.ray", raising=False)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(NstkitError, match=r"pip install 'nstkit\[ray\]'"):
        ray_executor()
    result = run_tiny(tmp_path / "out", "--engine", "ray")
    assert result.exit_code == 2
    assert "--engine ray needs Ray, which is not installed: pip install 'nstkit[ray]'" \
        in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("error", "transient"), [
    (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
    (RuntimeError("CUDA error: out of memory"), True),
    (OSError(errno.EIO, "Input/output error"), True),
    (OSError(errno.ESTALE, "Stale file handle"), True),
    (OSError(errno.ENOSPC, "No space left on device"), True),
    (TimeoutError("read timed out"), True),
    (FileNotFoundError(errno.ENOENT, "No such file or directory"), False),
    (PermissionError(errno.EACCES, "Permission denied"), False),
    (UnidentifiedImageError("cannot identify image file 'broken.png'"), False),
    (NstkitError("unknown loss 'gramm'"), False),
    (ValueError("loss is NaN at step 3"), False),
])
def test_which_failures_are_transient(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


def test_a_plugin_error_is_judged_by_its_cause() -> None:
    def wrapped(cause: BaseException) -> PluginError:
        error = PluginError("trace", f"on_step raised {cause}")
        error.__cause__ = cause
        return error

    assert is_transient(wrapped(OSError(errno.ENOSPC, "No space left on device")))
    assert not is_transient(wrapped(KeyError("losses")))
    assert not is_transient(PluginError("trace", "broke a contract"))


@pytest.mark.slow
def test_local_runs_record_the_retryable_flag_only_in_the_outcome(tiny: Path,
                                                                  tmp_path: Path, invoke,
                                                                  records, fast) -> None:
    """The manifest format is unchanged by the engine work: no new keys for local runs."""
    out = tmp_path / "out"
    style = tiny / "style" / "starry_night_gold.png"
    assert invoke("run", "gatys", "--content", tiny / "content" / "chelsea.png", "--style",
                  style, "--out", out, *fast).exit_code == 0
    [record] = records(out)
    assert "retryable" not in record
    assert "worker" not in record


def test_the_display_shows_remote_jobs_side_by_side() -> None:
    from io import StringIO

    from rich.console import Console

    from nstkit.job import JobInfo
    from nstkit.runner.display import WORK, BatchDisplay

    display = BatchDisplay(Console(file=StringIO(), force_terminal=True), live=True)
    display.start(3, 0)
    a, b, c = (JobInfo(name, 4, "cuda:0", (32, 32)) for name in ("a.png", "b.png", "c.png"))
    display.job_started(a)
    display.job_started(b)
    display.job_step(a, 2, {"total": 1.0})
    assert set(display.job_tasks) == {"a.png", "b.png"}
    [task] = [t for t in display.progress.tasks if t.description == "a.png"]
    assert task.fields["count"] == "2/4"
    assert task.completed == WORK / 2  # steps of one size weigh the same
    display.job_finished("a.png", "done", 1.0)
    assert set(display.job_tasks) == {"b.png"}
    display.on_job_start(c)  # a local job: the one before it has ended
    assert set(display.job_tasks) == {"c.png"}
    display.close()


RECORD_KEYS = ["output", "status", "content", "style", "recipe", "recipe_hash", "recipe_data",
               "seed", "device", "versions", "weights", "iterations", "shard", "wall_time",
               "error"]


def test_job_recorder_builds_the_manifest_records(tiny: Path) -> None:
    """The records' keys in their order (the manifest format), a worker given per recorder
    (never shared), and the outcomes and summary kept alongside."""
    from nstkit.recipe import load_recipe
    from nstkit.runner.plan import Job
    from nstkit.runner.record import InputHashes, JobRecorder

    recipe = load_recipe("gatys", ["size=32"])
    job = Job(tiny / "content" / "chelsea.png", tiny / "style" / "starry_night.png", "c.png")
    records: list[dict] = []
    reported: list = []
    local = JobRecorder(recipe, "cpu", records, reported.append, shard=(1, 4))
    local.done(job, 1.23456, {"total": 2.0}, size=[32, 21], batch_size=1, output_sha256="ab")
    local.failed([job], OSError(5, "Input/output error"), 0.5, hint="retry")
    done, failed = records
    assert list(done) == [*RECORD_KEYS, "losses", "size", "batch_size", "output_sha256",
                          "finished"]
    assert list(failed) == [*RECORD_KEYS, "finished"]
    assert (done["wall_time"], done["shard"], done["device"]) == (1.235, "1/4", "cpu")
    assert done["content"]["sha256"] == InputHashes()(job.content)
    assert failed["error"] == "OSError: [Errno 5] Input/output error (retry)"
    assert [(o.status, o.retryable) for o in reported] == [("done", False), ("failed", True)]
    assert local.summary.outcomes == reported
    assert local.summary.exit_code == 1

    hashes, remote = InputHashes(), []
    for attempt in (0, 1):
        JobRecorder(recipe, "cuda:0", remote, hashes=hashes,
                    worker={"engine": "ray", "attempt": attempt}).failed([job], ValueError(), 0)
    assert [list(r) for r in remote] == [[*RECORD_KEYS[:-2], "worker", *RECORD_KEYS[-2:],
                                          "finished"]] * 2
    assert [r["worker"]["attempt"] for r in remote] == [0, 1]
    assert "worker" not in records[0]


def test_input_hashes_cache_the_default_file_sha256_or_the_given_digest(tmp_path: Path) -> None:
    import hashlib

    from nstkit.runner.record import InputHashes

    image = tmp_path / "a.png"
    image.write_bytes(b"pixels")
    hashes = InputHashes()
    assert hashes(image) == hashlib.sha256(b"pixels").hexdigest()
    image.write_bytes(b"changed")  # computed once per run
    assert hashes(image) == hashlib.sha256(b"pixels").hexdigest()

    asked: list[Path] = []

    def folder_digest(path: Path) -> str:
        asked.append(path)
        return f"digest of {path.name}"

    frames = InputHashes(folder_digest)
    assert [frames(tmp_path), frames(tmp_path), frames(image)] == [
        f"digest of {tmp_path.name}", f"digest of {tmp_path.name}", "digest of a.png"]
    assert asked == [tmp_path, image]


def test_the_progress_relay_sends_every_step_in_batches() -> None:
    from nstkit.executors.ray_worker import ProgressRelay
    from nstkit.job import JobInfo

    sent: list[tuple] = []
    relay = ProgressRelay(sent.append, every=3600)  # only the last step flushes
    job = JobInfo("a.png", 3, "cpu", (8, 8), {"outputs": ["a.png", "b.png"], "recipe": "g",
                                               "other": object()}, ((0.5, 2), (1.0, 1)))
    relay.on_job_start(job)
    for step in (1, 2, 3):
        relay.on_step(job, step, {"total": 10.0 - step})
    relay.on_job_end(job)  # nothing left to send
    start, steps = sent
    assert start == ("start", "a.png", 3, "cpu", (8, 8),
                     {"outputs": ["a.png", "b.png"], "recipe": "g"}, ((0.5, 2), (1.0, 1)))
    assert steps[:2] == ("steps", "a.png")
    assert [(step, losses) for step, _, losses in steps[2]] == [
        (1, {"total": 9.0}), (2, {"total": 8.0}), (3, {"total": 7.0})]
    seconds = [s for _, s, _ in steps[2]]
    assert seconds == sorted(seconds)
    assert seconds[0] >= 0

    sent.clear()
    relay = ProgressRelay(sent.append, every=0)  # every step at once
    relay.on_job_start(job)
    relay.on_step(job, 1, {"total": 1.0})
    relay.on_job_end(job)
    assert [event[0] for event in sent] == ["start", "steps"]


def test_a_progress_tee_tells_each_sink_what_it_takes() -> None:
    from nstkit.executors import ProgressTee, TimedProgressSink, tell_step
    from nstkit.job import JobInfo

    class Plain:
        def __init__(self) -> None:
            self.told: list[tuple] = []

        def job_started(self, job) -> None:
            self.told.append(("started", job.name))

        def job_step(self, job, step, losses) -> None:
            self.told.append(("step", step))

    class Timed(Plain):
        def job_step_at(self, job, step, losses, seconds) -> None:
            self.told.append(("step at", step, seconds))

    plain, timed = Plain(), Timed()
    assert isinstance(timed, TimedProgressSink)
    assert not isinstance(plain, TimedProgressSink)
    tee = ProgressTee(plain, timed)
    job = JobInfo("a.png", 2, "cpu", (8, 8))
    tee.job_started(job)
    tell_step(tee, job, 1, {"total": 1.0}, 0.25)
    tee.job_step(job, 2, {"total": 0.5})
    assert plain.told == [("started", "a.png"), ("step", 1), ("step", 2)]
    assert timed.told == [("started", "a.png"), ("step at", 1, 0.25), ("step", 2)]
