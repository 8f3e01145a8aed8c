"""Tests of the nstkit-trace plugin: one loss CSV per job, from the lifecycle hooks."""

from __future__ import annotations

import csv
import types
from importlib import metadata

import pytest

pytest.importorskip(
    "nstkit_trace", reason="nstkit-trace is not installed: pip install -e plugins/nstkit-trace")

from nstkit_trace import LossTrace, plugin, trace_path

import nstkit
from nstkit.errors import LossError
from nstkit.job import JobInfo
from nstkit.losses import TVLoss
from nstkit.testing import make_host, modules_after, stylize_tiny


def _read(path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_one_row_per_state_equal_to_the_history(tmp_path) -> None:
    host = make_host(LossTrace(tmp_path / "traces"))
    result = stylize_tiny(host, iterations=4, job_name="cat x wave.png")
    rows = _read(tmp_path / "traces" / "cat_x_wave.png.losses.csv")
    assert list(rows[0]) == ["step", "seconds", "content", "gram", "total"]
    assert [int(row["step"]) for row in rows] == [0, 1, 2, 3, 4]
    for name in ("content", "gram", "total"):
        assert [float(row[name]) for row in rows] == pytest.approx(result.history[name],
                                                                   rel=1e-8)
    seconds = [float(row["seconds"]) for row in rows]
    assert seconds == sorted(seconds)


def _register(factory):
    @nstkit.hookimpl
    def register_losses(register):
        register("exploding", factory)

    return register_losses


def test_a_failed_job_keeps_the_rows_written_before_it_failed(tmp_path) -> None:
    class Exploding(TVLoss):
        calls = 0

        def forward(self, image, features):
            self.calls += 1
            return super().forward(image, features) * (float("nan") if self.calls > 2 else 1)

    losses = types.SimpleNamespace(register_losses=_register(Exploding))
    host = make_host(LossTrace(tmp_path), losses)
    with pytest.raises(LossError):
        stylize_tiny(host, iterations=5, optimizer="sgd", losses=[{"name": "exploding"}],
                     job_name="boom")
    assert [row["step"] for row in _read(tmp_path / "boom.losses.csv")] == ["0", "1"]


def test_the_installed_plugin_writes_only_when_the_variable_is_set(tmp_path,
                                                                    monkeypatch) -> None:
    host = make_host(plugin)
    monkeypatch.delenv("NSTKIT_TRACE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    stylize_tiny(host, iterations=1, job_name="quiet")
    assert list(tmp_path.rglob("*.csv")) == []
    monkeypatch.setenv("NSTKIT_TRACE_DIR", str(tmp_path / "out"))
    stylize_tiny(host, iterations=2, job_name="loud")
    assert len(_read(tmp_path / "out" / "loud.losses.csv")) == 3


def test_trace_path_keeps_file_names_safe(tmp_path) -> None:
    job = JobInfo("out/dir/a b:c.png", 1, "cpu", (8, 8))
    assert trace_path(tmp_path, job) == tmp_path / "a_b_c.png.losses.csv"


def test_entry_point_is_installed() -> None:
    eps = {ep.name: ep.value for ep in metadata.entry_points(group="nstkit")}
    assert eps.get("trace") == "nstkit_trace.plugin"


def test_registers_lifecycle_hooks_only() -> None:
    host = make_host(plugin)
    info = {i.name: i for i in host.info()}["nstkit_trace.plugin"]
    assert info.components == {}
    assert info.hooks == ["on_job_end", "on_job_start", "on_step"]


def _heavy_modules_after(code: str) -> list[str]:
    """Which of torch and NumPy a fresh interpreter has imported after running ``code``."""
    return modules_after(code, ('torch', 'numpy'))


@pytest.mark.slow
def test_importing_the_entry_point_module_imports_no_torch() -> None:
    """nstkit imports the module at start-up (``nstkit --help`` included)."""
    assert _heavy_modules_after("import nstkit_trace.plugin") == []


@pytest.mark.slow
def test_the_probe_sees_a_module_that_imports_torch() -> None:
    assert "torch" in _heavy_modules_after("import nstkit.result")
