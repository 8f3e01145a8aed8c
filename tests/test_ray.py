"""The ``ray`` engine on a local Ray cluster with two fake GPUs (CPU only, started once per
session): every job once, one actor per GPU, crashes and transient errors retried, permanent
errors recorded once, resume, and the CLI against ``ray start --head`` (marked slow: the
cluster's daemons and workers are processes); and, without a cluster, what a task asks for
and the variables workers are given (:func:`task_options`, :func:`worker_env`)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install nstkit[ray])")

from nstkit.errors import NstkitError  # noqa: E402
from nstkit.executors import RunRequest  # noqa: E402
from nstkit.executors.ray import RayExecutor, task_options, worker_env  # noqa: E402
from nstkit.hookspecs import hookimpl  # noqa: E402
from nstkit.plugins import get_host  # noqa: E402
from nstkit.recipe import load_recipe  # noqa: E402
from nstkit.runner.execute import RunOptions, split_done  # noqa: E402
from nstkit.runner.manifest import latest_records  # noqa: E402
from nstkit.runner.plan import find_images, plan_jobs  # noqa: E402

# the workers cannot import this test module: its plugins travel by value
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

# random VGG16 weights build faster in each worker than the original VGG19 ones load
RECIPE = ["size=32", "optimizer.iterations=2", "extractor.name=vgg16", "extractor.weights=random"]


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray cluster, 2 CPUs and 2 fake GPUs, started once: only this module uses it,
    and it stops with the module, so its daemons (GCS, raylet, monitor: about a quarter of a
    core while idle) do not slow down the rest of the suite."""
    ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False,
             object_store_memory=100 * 1024 * 1024, logging_level="WARNING")
    yield
    ray.shutdown()


class CountStarts:
    """Appends the name of every job a worker starts to ``path`` (one line each)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @hookimpl
    def on_job_start(self, job) -> None:
        with self.path.open("a") as handle:
            handle.write(job.name + "\n")


class CrashOnce:
    """Kills the worker process the first time job ``name`` starts."""

    def __init__(self, marker: Path, name: str) -> None:
        self.marker, self.name = marker, name

    @hookimpl
    def on_job_start(self, job) -> None:
        if job.name == self.name and not self.marker.exists():
            self.marker.touch()
            os._exit(1)


class FlakyDisk:
    """Raises an I/O error (EIO) the first ``times`` times job ``name`` starts."""

    def __init__(self, counter: Path, name: str, times: int) -> None:
        self.counter, self.name, self.times = counter, name, times

    @hookimpl
    def on_job_start(self, job) -> None:
        if job.name != self.name:
            return
        seen = len(self.counter.read_text()) if self.counter.exists() else 0
        if seen < self.times:
            self.counter.write_text("x" * (seen + 1))
            raise OSError(errno.EIO, "Input/output error (injected)")


class Display:
    """A progress sink like the CLI's display: what the driver relays from the workers."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.steps: dict[str, list[int]] = {}

    def job_started(self, job) -> None:
        self.started.append(job.name)

    def job_step(self, job, step, losses) -> None:
        assert set(losses) == {"content", "gram", "total"}
        self.steps.setdefault(job.name, []).append(step)


def _run(content: Path, style: Path, out: Path, progress: Display | None = None,
         **engine) -> tuple:
    recipe = load_recipe("gatys", RECIPE)
    jobs = plan_jobs(find_images(content), find_images(style), recipe.name, "png")
    todo, _ = split_done(jobs, recipe, out, False, lambda path: _sha(path))
    out.mkdir(parents=True, exist_ok=True)
    request = RunRequest(recipe, todo, RunOptions(out), get_host(), progress=progress)
    return jobs, todo, RayExecutor(**engine).run(request)


def _sha(path: Path) -> str:
    from nstkit.runner.manifest import file_sha256

    return file_sha256(path)


def _starts(path: Path) -> list[str]:
    return sorted(path.read_text().splitlines()) if path.exists() else []


@pytest.mark.slow
def test_every_job_runs_once_one_actor_per_gpu_and_a_rerun_skips_all(
        ray_cluster, tiny: Path, tmp_path: Path, records) -> None:
    out, starts, display = tmp_path / "out", tmp_path / "starts.txt", Display()
    jobs, todo, summary = _run(tiny / "content", tiny / "style", out, display,
                               plugins=[CountStarts(starts)])
    assert summary.count("done") == 4
    assert summary.exit_code == 0
    assert _starts(starts) == sorted(job.output for job in jobs)  # each job ran exactly once
    found = records(out)
    assert sorted(r["output"] for r in found) == sorted(job.output for job in jobs)
    workers = {r["worker"]["worker"]: r["worker"]["cuda_visible_devices"] for r in found}
    assert sorted(workers.values()) == ["0", "1"]  # two actors, a different GPU each
    assert all(r["worker"]["engine"] == "ray" and r["worker"]["attempt"] == 0 for r in found)
    assert all((out / job.output).is_file() for job in jobs)
    assert sorted(display.started) == sorted(job.output for job in jobs)  # relayed progress
    assert all(steps[-1] == 2 for steps in display.steps.values())  # the last step always
    assert len(display.steps) == 4
    _, todo, again = _run(tiny / "content", tiny / "style", out, plugins=[CountStarts(starts)])
    assert todo == []
    assert again.outcomes == []
    assert len(_starts(starts)) == 4
    assert len(records(out)) == 4


@pytest.mark.slow
def test_a_crashed_worker_is_restarted_and_its_job_retried(
        ray_cluster, tiny: Path, tmp_path: Path, records) -> None:
    out, starts = tmp_path / "out", tmp_path / "starts.txt"
    victim = "chelsea__starry_night__gatys.png"
    _, _, summary = _run(tiny / "content", tiny / "style", out, actors=1,
                         plugins=[CountStarts(starts), CrashOnce(tmp_path / "crashed", victim)])
    assert (tmp_path / "crashed").exists()  # the crash did happen
    assert summary.count("done") == 4, [o.error for o in summary.outcomes]
    latest = latest_records(out)
    assert latest[victim]["status"] == "done"
    assert latest[victim]["worker"]["attempt"] == 1
    assert _starts(starts).count(victim) == 2
    assert len(records(out)) == 4  # the crash itself left no record


@pytest.mark.slow
def test_transient_errors_are_retried_boundedly_and_permanent_ones_recorded_once(
        ray_cluster, tiny: Path, tmp_path: Path, records) -> None:
    content = tmp_path / "content"
    content.mkdir()
    for name in ("chelsea.png", "coffee.png"):
        shutil.copy(tiny / "content" / name, content)
    (content / "broken.png").write_bytes(b"not an image")
    out, starts = tmp_path / "out", tmp_path / "starts.txt"
    flaky, hopeless = "chelsea__starry_night__gatys.png", "coffee__starry_night__gatys.png"
    _, _, summary = _run(content, tiny / "style" / "starry_night.png", out, actors=1,
                         max_retries=2, plugins=[CountStarts(starts),
                                                 FlakyDisk(tmp_path / "flaky", flaky, 2),
                                                 FlakyDisk(tmp_path / "hopeless", hopeless, 9)])
    assert summary.exit_code == 1
    found = {r["output"]: r for r in records(out)}
    assert len(records(out)) == 3  # one record each: failed attempts that are retried leave none
    broken = found["broken__starry_night__gatys.png"]
    assert broken["status"] == "failed"
    assert "UnidentifiedImageError" in broken["error"]
    assert broken["worker"]["attempt"] == 0  # permanent: not retried
    assert found[flaky]["status"] == "done"
    assert found[flaky]["worker"]["attempt"] == 2
    assert found[hopeless]["status"] == "failed"
    assert "Input/output error (injected)" in found[hopeless]["error"]
    assert found[hopeless]["worker"]["attempt"] == 2
    assert (tmp_path / "hopeless").read_text() == "xxx"  # 1 try + 2 retries, no more
    assert _starts(starts) == [flaky] * 3 + [hopeless] * 3


@pytest.mark.slow
def test_cli_engine_ray_uses_the_running_session(ray_cluster, tiny: Path,
                                                 tmp_path: Path, invoke, records, fast) -> None:
    out = tmp_path / "out"
    args = ["run", "gatys", "--content", tiny / "content", "--style", tiny / "style" /
            "starry_night_gold.png", "--out", out, *fast, "--engine", "ray",
            *(a for s in RECIPE[2:] for a in ("--set", s))]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert "[2/2]" in result.output
    assert {r["worker"]["engine"] for r in records(out)} == {"ray"}
    again = invoke(*args)
    assert again.exit_code == 0
    assert "2 job(s) already done" in again.output


@pytest.mark.slow
def test_compare_through_ray_matches_the_local_engine(ray_cluster, tiny: Path, tmp_path: Path,
                                                     invoke, records) -> None:
    """``compare --engine ray`` makes the outputs, records and loss curves the local engine
    makes (the original VGG19 weights: the same in every process, unlike random ones)."""
    from PIL import Image

    from nstkit.compare.curves import read_curve

    def compare(out: Path, *engine: str):
        return invoke("compare", "gatys", "--sweep", "seed=1,2", "--content",
                      tiny / "content" / "chelsea.png", "--style",
                      tiny / "style" / "starry_night.png", "--out", out, "--size", "32",
                      "--iterations", "2", "--judge-size", "32", "--thumb", "48", "--quiet",
                      *engine)

    local, remote = tmp_path / "local", tmp_path / "ray"
    assert compare(local).exit_code == 0
    result = compare(remote, "--engine", "ray")
    assert result.exit_code == 0, result.output
    rows = [json.loads((out / "results.json").read_text())["rows"] for out in (local, remote)]
    assert [(r["variant"], r["status"]) for r in rows[1]] == [
        (r["variant"], r["status"]) for r in rows[0]] == [("gatys seed=1", "done"),
                                                           ("gatys seed=2", "done")]
    for folder in ("gatys_seed=1", "gatys_seed=2"):
        [mine], [theirs] = records(local / "runs" / folder), records(remote / "runs" / folder)
        assert theirs["worker"]["engine"] == "ray"
        assert list(mine) == [key for key in theirs if key != "worker"]
        for key in ("output", "status", "content", "style", "recipe_hash", "recipe_data",
                    "seed", "device", "iterations", "size", "batch_size", "error"):
            assert theirs[key] == mine[key], key
        assert theirs["losses"] == pytest.approx(mine["losses"], rel=1e-3)
        output = mine["output"]
        pixels = [Image.open(out / "runs" / folder / output).convert("RGB")
                  for out in (local, remote)]
        diff = [abs(a - b) for a, b in zip(pixels[0].tobytes(), pixels[1].tobytes(),
                                           strict=True)]
        assert max(diff) <= 2  # thread counts differ: float sums in another order
        curves = [read_curve(out / "runs" / folder, output) for out in (local, remote)]
        assert curves[1] is not None
        assert curves[1].steps == curves[0].steps == [0, 1, 2]
        assert curves[1].losses.keys() == curves[0].losses.keys()
        for term, values in curves[0].losses.items():
            assert curves[1].losses[term] == pytest.approx(values, rel=1e-3)
        assert curves[1].seconds[0] == 0
        assert curves[1].seconds == sorted(curves[1].seconds)
        assert curves[1].seconds[-1] > 0


@pytest.fixture
def ray_head():
    """A cluster started with ``ray start --head --block`` (1 CPU, its own port), stopped by
    ending that process: ``ray stop`` would also stop the session's cluster."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", "--head",
                             f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                             "--disable-usage-stats", "--block"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"  # what auto reads
    try:
        for _ in range(600):
            if current.is_file() and current.read_text().strip().endswith(f":{port}"):
                break
            assert head.poll() is None, "ray start --head exited"
            time.sleep(0.1)
        else:
            pytest.fail("ray start --head did not come up within 60 s")
        yield env
    finally:
        head.terminate()
        head.wait(timeout=60)
        if current.is_file() and current.read_text().strip().endswith(f":{port}"):
            current.unlink()  # as ray stop does: auto must not find a cluster that is gone


@pytest.mark.slow
def test_cli_against_ray_start_head_with_address_auto(ray_head, tiny: Path,
                                                      tmp_path: Path, records, fast) -> None:
    out = tmp_path / "out"
    command = [sys.executable, "-m", "nstkit", "run", "gatys", "--content",
               str(tiny / "content" / "chelsea.png"), "--style", str(tiny / "style"), "--out",
               str(out), *fast, "--engine", "ray", "--address", "auto",
               *(a for s in RECIPE[2:] for a in ("--set", s))]
    env = {**ray_head, "NSTKIT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    found = records(out)
    assert sorted(r["status"] for r in found) == ["done", "done"]
    assert {r["worker"]["device"] for r in found} == {"cpu"}  # no GPU in that cluster
    status = subprocess.run([sys.executable, "-m", "nstkit", "status", str(out)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert status.returncode == 0, status.stdout
    assert json.loads((out / "plan.json").read_text())["shards"] == 1


@pytest.mark.parametrize(("device", "gpus", "ask"), [
    ("auto", 2, {"num_gpus": 1}), ("cuda", 1, {"num_gpus": 1}), ("cuda:1", 4, {"num_gpus": 1}),
    ("cpu", 2, {"num_cpus": 1}), ("auto", 0, {"num_cpus": 1}), ("cpu", 0, {"num_cpus": 1}),
])
def test_task_options_ask_for_a_gpu_where_the_cluster_has_them(
        monkeypatch: pytest.MonkeyPatch, device: str, gpus: int, ask: dict) -> None:
    resources = {"CPU": 8.0, **({"GPU": float(gpus)} if gpus else {})}
    monkeypatch.setattr(ray, "cluster_resources", lambda: resources)
    assert task_options(device) == ask


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_task_options_refuse_cuda_on_a_cluster_without_gpus(monkeypatch: pytest.MonkeyPatch,
                                                            device: str) -> None:
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0})
    with pytest.raises(NstkitError, match=rf"^--device {device}: the Ray cluster has no GPU$"):
        task_options(device)


def test_worker_env_passes_the_nstkit_variables_only(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [key for key in os.environ if key.startswith("NSTKIT_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("NSTKIT_DEBUG", "1")
    monkeypatch.setenv("NSTKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("NOT_NSTKIT_X", "2")
    assert worker_env() == {"NSTKIT_DEBUG": "1", "NSTKIT_DISABLE_PLUGIN_AUTOLOAD": "1"}
