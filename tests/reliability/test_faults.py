"""Faults during a batch: kill -9, Ctrl-C, NaN/inf losses, CUDA out of memory, broken plugins.

The kill and Ctrl-C tests run ``nstkit run`` as a subprocess paused inside a job by a plugin
(``pausing_nstkit.py``) and synchronise on files it writes, never on sleeps.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nstkit.hookspecs import hookimpl
from nstkit.image import load_image
from nstkit.losses import LossTerm
from nstkit.plugins import PluginHost, get_host
from nstkit.recipe import load_recipe
from nstkit.runner.execute import Runner, RunOptions
from nstkit.runner.manifest import file_sha256
from nstkit.stylisation import build_extractor
from nstkit.testing import TinyExtractor

PAUSER = Path(__file__).with_name("pausing_nstkit.py")
TIMEOUT = 120


@pytest.fixture
def start_paused(tiny: Path, fast: tuple[str, ...]):
    """``start_paused(out, job)``: ``nstkit run`` over the 2 x 2 tiny images in a subprocess,
    paused after step 1 of job ``job``; returns ``(process, marker)``."""

    def start(out: Path, job: int) -> tuple[subprocess.Popen, Path]:
        marker = out.parent / f"paused-{job}"
        env = {**os.environ, "NSTKIT_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1",
               "NSTKIT_TEST_PAUSE": f"{job}:{marker}"}
        command = [sys.executable, str(PAUSER), "run", "gatys", "--content",
                   str(tiny / "content"), "--style", str(tiny / "style"), "--out", str(out),
                   *fast]
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + TIMEOUT
        while not marker.exists():
            if process.poll() is not None:
                pytest.fail(f"nstkit ended (code {process.returncode}) before job {job} "
                            f"began:\n{process.communicate()[1]}")
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"job {job} did not start within {TIMEOUT} s")
            time.sleep(0.05)
        return process, marker

    return start


@pytest.fixture
def check_done_outputs(records):
    """``check_done_outputs(out)``: every output the manifest reports done is intact and a
    valid 32 px image; returns them."""

    def check(out: Path) -> list[str]:
        done = [r for r in records(out) if r["status"] == "done"]
        for record in done:
            target = out / record["output"]
            assert file_sha256(target) == record["output_sha256"], record["output"]
            assert max(load_image(target).shape[-2:]) == 32
        return [r["output"] for r in done]

    return check


def visible_images(out: Path) -> set[str]:
    return {p.name for p in out.iterdir() if p.suffix == ".png" and not p.name.startswith(".")}


@pytest.mark.slow
def test_kill_9_mid_batch_loses_nothing_and_the_rerun_does_the_rest(
        tiny: Path, tmp_path: Path, start_paused, check_done_outputs, run, records) -> None:
    out = tmp_path / "out"
    process, _ = start_paused(out, job=3)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=TIMEOUT)
    assert process.returncode == -signal.SIGKILL
    finished = check_done_outputs(out)
    assert finished == ["chelsea__starry_night__gatys.png", "chelsea__starry_night_gold__gatys.png"]
    assert visible_images(out) == set(finished)
    # What a kill during a write leaves: a hidden temporary file and a torn manifest line.
    (out / ".coffee__starry_night__gatys.png.k9x.tmp").write_bytes(b"\x89PNG\r\n\x1a\npart")
    with (out / "manifest.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"output": "coffee__starry_night__gatys.png", "status": "do')
    rerun = run(tiny / "content", tiny / "style", out)
    assert rerun.exit_code == 0, rerun.output
    assert "2 job(s) already done" in rerun.output
    redone = [r["output"] for r in records(out)[2:]]
    assert redone == ["coffee__starry_night__gatys.png", "coffee__starry_night_gold__gatys.png"]
    assert sorted(check_done_outputs(out)) == sorted(visible_images(out))
    assert len(visible_images(out)) == 4


@pytest.mark.slow
def test_sigint_stops_cleanly_with_a_summary_and_exit_130(tmp_path: Path, start_paused,
                                                          check_done_outputs, records) -> None:
    out = tmp_path / "out"
    process, _ = start_paused(out, job=2)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "(interrupted)" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary == {"done": 1, "failed": 0, "skipped": 0, "interrupted": True,
                       "failures": []}
    assert check_done_outputs(out) == ["chelsea__starry_night__gatys.png"]
    assert len(records(out)) == 1  # the job in progress left no record
    assert visible_images(out) == {"chelsea__starry_night__gatys.png"}
    assert not list(out.glob(".*.tmp"))


# --- faults injected by test plugins, in-process -------------------------------------------


class _Term(LossTerm):
    """A loss term reading no layers whose value the plugin decides: ``plugin.value(image)``."""

    def __init__(self, plugin: _FaultyLoss) -> None:
        super().__init__({})
        self.plugin = plugin

    def forward(self, image: torch.Tensor, features: dict) -> torch.Tensor:
        return self.plugin.value(image)


class _FaultyLoss:
    """Registers loss ``name``; ``fault(job name, steps done, image)`` may poison or raise."""

    def __init__(self, name: str, fault) -> None:
        self.name, self.fault = name, fault
        self.job, self.steps, self.seen = "", 0, []

    @hookimpl
    def register_losses(self, register) -> None:
        register(self.name, lambda layers=None: _Term(self))

    @hookimpl
    def on_job_start(self, job) -> None:
        self.job, self.steps = job.name, 0

    @hookimpl
    def on_step(self, job, step: int) -> None:
        self.steps = step
        self.seen.append((job.name, step))

    def value(self, image: torch.Tensor) -> torch.Tensor:
        zero = image.sum() * 0
        return zero + self.fault(self.job, self.steps, image)


@pytest.fixture
def run_with(tiny: Path, run):
    """``run_with(plugin, out, *extra)``: add ``plugin`` to the host, then run the tiny contents
    with one style and the plugin's loss as a third term."""

    def run_plugin(plugin: _FaultyLoss, out: Path, *extra: str):
        get_host().add(plugin, name=f"test-{plugin.name}")
        return run(tiny / "content", tiny / "style" / "starry_night.png", out, "--set",
                   f"losses.2={{name: {plugin.name}}}", *extra)

    return run_plugin


@pytest.mark.slow
@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_a_non_finite_loss_fails_its_job_at_that_step(tmp_path: Path, run_with, by_content,
                                                      bad: float) -> None:
    def poison(job: str, steps: int, image: torch.Tensor) -> float:
        return bad if job.startswith("chelsea") and steps >= 2 else 0.0

    plugin = _FaultyLoss("poison", poison)
    out = tmp_path / "out"
    result = run_with(plugin, out, "--iterations", "4", "--set", "optimizer.name=adam")
    assert result.exit_code == 1, result.output
    jobs = by_content(out)
    assert jobs["chelsea.png"]["status"] == "failed"
    assert jobs["chelsea.png"]["error"] == ("LossError: loss became non-finite at step 3 "
                                            "(terms: poison, total)")
    assert jobs["coffee.png"]["status"] == "done"
    steps = [step for job, step in plugin.seen if job.startswith("chelsea")]
    assert steps == [1, 2]  # stopped at the first bad step, not one later
    assert not (out / jobs["chelsea.png"]["output"]).exists()


@pytest.mark.slow
def test_cuda_oom_in_a_batch_is_retried_one_image_at_a_time(tmp_path: Path, run_with,
                                                             records) -> None:
    def oom(job: str, steps: int, image: torch.Tensor) -> float:
        if image.shape[0] > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return 0.0

    out = tmp_path / "out"
    plugin = _FaultyLoss("oom", oom)
    result = run_with(plugin, out, "--batch-size", "2")
    assert result.exit_code == 0, result.output
    found = records(out)
    assert [(r["status"], r["batch_size"]) for r in found] == [("done", 1), ("done", 1)]


@pytest.mark.slow
def test_cuda_oom_of_a_single_image_is_reported_and_the_batch_goes_on(tmp_path: Path, run_with,
                                                                      by_content) -> None:
    def oom(job: str, steps: int, image: torch.Tensor) -> float:
        if job.startswith("chelsea"):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return 0.0

    out = tmp_path / "out"
    result = run_with(_FaultyLoss("oom", oom), out)
    assert result.exit_code == 1, result.output
    jobs = by_content(out)
    assert jobs["coffee.png"]["status"] == "done"
    error = jobs["chelsea.png"]["error"]
    assert error.startswith("OutOfMemoryError: CUDA out of memory. Tried to allocate 9.00 GiB")
    assert "22x32 px, 1 image at once" in error  # chelsea.png, 64 x 43, at 32 px
    assert "try a smaller --size or --batch-size, or --device cpu" in error
    assert json.loads((out / "summary.json").read_text())["failed"] == 1


def test_cuda_oom_reports_the_device_memory(tiny: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (2 * 2**30, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: 77.5 * 2**30)
    recipe = load_recipe("gatys", ["size=32"])
    runner = Runner(recipe, RunOptions(tmp_path, device="cuda:0"), get_host(), print)
    from nstkit.memory import estimate_for_recipe

    estimate = estimate_for_recipe(recipe.config, 24, 32, 3)
    assert runner.memory_report(torch.zeros(3, 3, 24, 32)) == (
        f"24x32 px, 3 images at once; estimated {estimate}; 77.5 GiB allocated at the peak, "
        "2.0 of 80.0 GiB free on cuda:0; try a smaller --size or --batch-size, or --device cpu")


class _FullGpuExtractor(TinyExtractor):
    """Builds fine; moving it to the device runs out of memory, as on a GPU others fill."""

    def __init__(self, weights: str | None = None, pooling: str = "max") -> None:
        super().__init__()

    def to(self, *args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 548.00 MiB")


class _FullGpu:
    @hookimpl
    def register_extractors(self, register) -> None:
        register("full-gpu", _FullGpuExtractor)


def test_cuda_oom_loading_the_extractor_is_a_clear_error(tiny: Path, tmp_path: Path, run,
                                                         records) -> None:
    get_host().add(_FullGpu(), name="test-full-gpu")
    result = run(tiny / "content", tiny / "style", tmp_path / "out", "--set",
                 "extractor.name=full-gpu", "--device", "cpu")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: CUDA out of memory moving extractor 'full-gpu' to "
                                    "cpu (CUDA out of memory. Tried to allocate 548.00 MiB)")
    assert "Traceback" not in result.output
    assert records(tmp_path / "out") == []


class _RemoveWhenStarting:
    """Deletes ``path`` when the first job starts (an input removed during a batch)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @hookimpl
    def on_job_start(self) -> None:
        self.path.unlink(missing_ok=True)


@pytest.mark.slow
def test_an_input_removed_during_the_batch_fails_its_job_alone(tiny: Path, tmp_path: Path,
                                                              run, by_content) -> None:
    content = tmp_path / "content"
    shutil.copytree(tiny / "content", content)
    get_host().add(_RemoveWhenStarting(content / "coffee.png"), name="test-remover")
    out = tmp_path / "out"
    result = run(content, tiny / "style" / "starry_night.png", out)
    assert result.exit_code == 1, result.output
    jobs = by_content(out)
    assert jobs["chelsea.png"]["status"] == "done"
    gone = jobs["coffee.png"]
    missing = content / "coffee.png"
    assert gone["error"] == f"ImageError: cannot read image {missing}: no such file"
    assert gone["content"]["sha256"] is None


class _FlakyHook:
    """Raises in ``hook`` during the job whose name starts with ``target``."""

    def __init__(self, hook: str, target: str) -> None:
        self.hook, self.target = hook, target

    def _maybe_raise(self, hook: str, job) -> None:
        if hook == self.hook and job.name.startswith(self.target):
            raise RuntimeError("flaky plugin broke")

    @hookimpl
    def on_job_start(self, job) -> None:
        self._maybe_raise("on_job_start", job)

    @hookimpl
    def on_step(self, job) -> None:
        self._maybe_raise("on_step", job)

    @hookimpl
    def on_job_end(self, job) -> None:
        self._maybe_raise("on_job_end", job)


@pytest.mark.slow
@pytest.mark.parametrize("hook", ["on_job_start", "on_step", "on_job_end"])
def test_a_plugin_raising_in_a_hook_fails_that_job_naming_the_plugin(tiny: Path, tmp_path: Path,
                                                                    run, by_content,
                                                                    hook: str) -> None:
    get_host().add(_FlakyHook(hook, "coffee"), name="nstkit-flaky")
    out = tmp_path / "out"
    result = run(tiny / "content", tiny / "style" / "starry_night.png", out)
    assert result.exit_code == 1, result.output
    jobs = by_content(out)
    assert jobs["chelsea.png"]["status"] == "done"
    assert jobs["coffee.png"]["error"] == ("PluginError: plugin 'nstkit-flaky': "
                                             f"{hook} raised RuntimeError: flaky plugin broke")


def _install_distribution(site: Path, module: str, source: str) -> None:
    """A distribution ``nstkit-<module>`` with entry point ``nstkit: <module>``, on disk."""
    info = site / f"nstkit_{module}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: nstkit-{module}\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text(f"[nstkit]\n{module} = {module}\n")
    (site / f"{module}.py").write_text(source)


@pytest.mark.slow
@pytest.mark.parametrize(("source", "message"), [
    ("raise ImportError(\"No module named 'torch_nonexistent'\")\n",
     "nstkit plugin 'broken' failed to load: ImportError: No module named 'torch_nonexistent'"),
    ("import nstkit\n\n@nstkit.hookimpl\ndef register_losses(register):\n"
     "    raise RuntimeError('boom')\n",
     "nstkit plugin 'broken' failed: register_losses raised RuntimeError: boom"),
])
def test_an_installed_plugin_that_breaks_is_named_and_the_run_goes_on(
        tiny: Path, tmp_path: Path, monkeypatch, run, records, source: str,
        message: str) -> None:
    _install_distribution(tmp_path / "site", "broken", source)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delenv("NSTKIT_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.setenv("NSTKIT_PLUGINS", "broken")
    out = tmp_path / "out"
    with pytest.warns(RuntimeWarning) as warned:
        result = run(tiny / "content" / "chelsea.png", tiny / "style" / "starry_night.png", out)
    assert result.exit_code == 0, result.output
    assert message in [str(w.message) for w in warned]
    assert [r["status"] for r in records(out)] == ["done"]


def test_a_long_lived_process_does_not_pile_up_extractors(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every run in one process (a CliRunner test, a notebook) makes a new plugin host, whose
    built-in factories are new ``partial`` objects; that must not build another VGG each time
    (the suite once reached 11 GB this way)."""
    cpu = torch.device("cpu")
    built = [build_extractor(PluginHost(autoload=False), "vgg16", cpu, pooling="avg",
                             weights="random") for _ in range(2)]
    assert built[0] is built[1]
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("validating a recipe built a VGG")

    # layer names come from the registered layer table: validation builds no network at all
    monkeypatch.setattr("nstkit.extractors.vgg.VGGExtractor.__init__", refuse)
    for pooling in ("max", "avg") * 3:
        load_recipe("gatys", [f"extractor.pooling={pooling}"], host=PluginHost(autoload=False))
