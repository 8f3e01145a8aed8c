"""``nstkit video``: clips and frame folders in, frames, videos and manifests out; skipping,
resuming, bad input, shards, engines. Most tests use a recipe on a tiny stand-in extractor
(``tiny``, registered for the test) so a frame takes milliseconds."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

av = pytest.importorskip("av")
pytest.importorskip("nstkit_video", reason="nstkit-video is not installed: "
                    "pip install -e plugins/nstkit-video")

from nstkit_video import plugin as video_plugin  # noqa: E402
from nstkit_video.flow import warp, warping_error  # noqa: E402
from nstkit_video.synthetic import pan_flow, panning_clip, write_clip, write_frames  # noqa: E402

import nstkit  # noqa: E402
from nstkit.errors import NstkitError  # noqa: E402
from nstkit.image import load_image  # noqa: E402
from nstkit.plugins import get_host, reset_host  # noqa: E402
from nstkit.samples import samples_dir  # noqa: E402
from nstkit.testing import add_tiny_extractor, tiny_images  # noqa: E402

RECIPE = """\
# tiny: gatys's terms on a tiny stand-in extractor, for tests
version: 1
extends: gatys
extractor: {name: tiny}
size: 32
seed: 0
losses:
  - {name: content, weight: 1.0, layers: [relu2_2]}
  - {name: gram, weight: 1.0, layers: [relu1_1, relu2_1]}
optimizer: {name: lbfgs, iterations: 3}
"""


@pytest.fixture(autouse=True)
def _host_with_tiny():
    """The process-wide host (installed plugins) plus the ``tiny`` extractor."""
    reset_host()
    add_tiny_extractor()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    reset_host()


@pytest.fixture
def video() -> Callable[..., object]:
    """``video(*args)``: ``nstkit video ARGS`` in-process, on an app with only this plugin's
    command."""
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """A test app."""

    video_plugin.register_commands(cli=app)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["video", *map(str, args)], env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pan/`` (4 PNG frames, 32x24), ``clip.mp4`` (the same pan, 12 fps, with audio),
    ``style.png`` and ``tiny.yaml``."""
    root = tmp_path_factory.mktemp("inputs")
    picture = load_image(samples_dir() / "content" / "chelsea.jpg")
    frames = panning_clip(picture, 4, (24, 32), (1, 2), start=(40, 60))
    write_frames(frames, root / "pan")
    write_clip(frames, root / "clip.mp4", fps=12, audio=True)
    from nstkit.image import save_image

    save_image(tiny_images(32).style, root / "style.png")
    (root / "tiny.yaml").write_text(RECIPE)
    return root


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _streams(path: Path) -> tuple[int, float, bool]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return (sum(1 for _ in container.decode(stream)), float(stream.average_rate),
                bool(container.streams.audio))


def test_help_lists_the_options_shared_with_run(video):
    result = video("--help")
    assert result.exit_code == 0
    for option in ("--input", "--style", "--out", "--size", "--iterations", "--set",
                   "--device", "--shard", "--engine", "--mode", "--temporal-weight", "--flow",
                   "--fps", "--overwrite", "--dry-run"):
        assert option in result.output


def test_a_folder_and_a_clip(video, inputs, tmp_path):
    out = tmp_path / "out"
    result = video(inputs / "tiny.yaml", "--input", inputs / "pan", "--input",
                   inputs / "clip.mp4", "--style", inputs / "style.png", "--out", out, "-q")
    assert result.exit_code == 0, result.output
    names = {"pan__style__tiny", "clip__style__tiny"}
    assert {p.name for p in out.glob("*.mp4")} == {f"{n}.mp4" for n in names}
    assert _streams(out / "pan__style__tiny.mp4") == (4, 25.0, False)
    assert _streams(out / "clip__style__tiny.mp4") == (4, 12.0, True)  # the audio copied
    for name in names:
        frames = _records(out / name / "manifest.jsonl")
        assert [r["frame"] for r in frames] == [1, 2, 3, 4]
        assert all(r["status"] == "done" and r["mode"] == "consistent" for r in frames)
    videos = {r["output"]: r for r in _records(out / "manifest.jsonl")}
    assert set(videos) == {f"{n}.mp4" for n in names}
    record = videos["pan__style__tiny.mp4"]
    assert record["status"] == "done"
    assert record["frames"] == 4
    assert record["warping_error"] > 0
    assert record["video"]["flow"] == "dis"
    assert record["recipe"] == "tiny"
    assert record["content"]["sha256"]
    assert "warping error" in result.output
    assert "manifest:" in result.output


def test_a_rerun_skips_finished_videos_and_resumes_frames(video, inputs, tmp_path):
    out = tmp_path / "out"
    args = (inputs / "tiny.yaml", "--input", inputs / "pan", "--style", inputs / "style.png",
            "--out", out, "-q")
    assert video(*args).exit_code == 0
    frames = (out / "pan__style__tiny" / "frames")
    first = {p.name: p.read_bytes() for p in frames.iterdir()}
    again = video(*args)
    assert again.exit_code == 0
    assert "1 video(s) already done" in again.output
    assert len(_records(out / "manifest.jsonl")) == 1
    manifest = out / "pan__style__tiny" / "manifest.jsonl"  # as if killed after frame 2
    manifest.write_text("\n".join(manifest.read_text().splitlines()[:2]) + "\n")
    (out / "pan__style__tiny.mp4").unlink()
    resumed = video(*args)
    assert resumed.exit_code == 0, resumed.output
    last = _records(out / "manifest.jsonl")[-1]
    assert (last["frames"], last["resumed_frames"]) == (4, 2)
    assert {p.name: p.read_bytes() for p in frames.iterdir()} == first
    assert [r["frame"] for r in _records(manifest)] == [1, 2, 3, 4]


def test_bad_inputs_fail_alone(video, inputs, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "cut.mp4").write_bytes((inputs / "clip.mp4").read_bytes()[:600])
    mixed = bad / "mixed"
    write_frames([load_image(inputs / "pan" / "frame_0001.png"), torch.rand(1, 3, 20, 30)],
                 mixed)
    (bad / "empty").mkdir()
    (bad / "notes.mkv").write_text("not a video")
    out = tmp_path / "out"
    result = video(inputs / "tiny.yaml", "--input", bad / "cut.mp4", "--input", mixed,
                   "--input", bad / "empty", "--input", bad / "notes.mkv", "--input",
                   inputs / "pan", "--style", inputs / "style.png", "--out", out, "-q")
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("failed:")]
    assert len(lines) == 4
    assert any("cut__style__tiny.mp4: VideoError:" in line and "truncated" in line
               for line in lines)
    assert any("frames of different sizes: frame 2 (frame_0002.png) is 30x20" in line
               for line in lines)
    assert any("a folder with no frames" in line for line in lines)
    assert any("notes.mkv: not a readable video" in line for line in lines)
    statuses = {r["output"]: r["status"] for r in _records(out / "manifest.jsonl")}
    assert statuses["pan__style__tiny.mp4"] == "done"
    assert sorted(statuses.values()).count("failed") == 4


def test_shards_split_the_videos(video, inputs, tmp_path):
    out = tmp_path / "out"
    common = (inputs / "tiny.yaml", "--input", inputs / "pan", "--input", inputs / "clip.mp4",
              "--style", inputs / "style.png", "--out", out, "-q")
    for index in (0, 1):
        assert video(*common, "--shard", f"{index}/2").exit_code == 0
    shards = [_records(out / f"manifest.shard-{i}-of-2.jsonl") for i in (0, 1)]
    assert [len(s) for s in shards] == [1, 1]
    assert {shards[0][0]["output"], shards[1][0]["output"]} == {
        "pan__style__tiny.mp4", "clip__style__tiny.mp4"}


def test_without_a_terminal_a_line_per_frame_and_per_video(video, inputs, tmp_path):
    result = video(inputs / "tiny.yaml", "--input", inputs / "pan", "--style",
                   inputs / "style.png", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("pan__")]
    assert len(lines) == 4
    assert lines[0].startswith("pan__style__tiny.mp4 frame 1/4: done in ")
    assert "warping error" not in lines[0]
    for index, line in enumerate(lines[1:4], 2):
        assert line.startswith(f"pan__style__tiny.mp4 frame {index}/4: done in ")
        assert ", warping error 0.0" in line
    assert "[1/1] pan__style__tiny.mp4: done in " in result.output


def test_outputs_stay_in_the_output_folder(video, inputs, tmp_path):
    """An input named ``..`` and a recipe file named oddly still write only under OUT."""
    frames = tmp_path / "frames"
    write_frames([load_image(p) for p in sorted((inputs / "pan").iterdir())][:2], frames)
    (frames / "sub").mkdir()
    recipe = tmp_path / "..odd name.yaml"
    recipe.write_text(RECIPE)
    out = tmp_path / "deep" / "out"
    result = video(recipe, "--input", frames / "sub" / "..", "--style", inputs / "style.png",
                   "--out", out, "-q")
    assert result.exit_code == 0, result.output
    outside = {p for p in tmp_path.rglob("*") if p.is_file()} - {
        p for p in out.rglob("*")} - {recipe, *frames.iterdir()}
    assert outside == set()
    assert sorted(p.name for p in out.iterdir()) == [
        "image__style__odd-name", "image__style__odd-name.mp4", "manifest.jsonl",
        "summary.json"]


def test_an_extractor_that_cannot_be_built_stops_before_any_video(video, inputs, tmp_path):
    class Broken:
        @nstkit.hookimpl
        def register_extractors(self, register):
            def build(pooling="max", weights=None):
                raise NstkitError("the weights file is corrupt")

            register("broken", build)

    get_host().add(Broken(), name="broken-extractor")
    out = tmp_path / "out"
    result = video(inputs / "tiny.yaml", "--input", inputs / "pan", "--input",
                   inputs / "clip.mp4", "--style", inputs / "style.png", "--out", out,
                   "--set", "extractor.name=broken")
    assert result.exit_code == 2, result.output
    assert "the weights file is corrupt" in result.output
    assert not out.exists()


def test_the_display_draws_a_bar_per_video_and_per_frame():
    """On a terminal: the videos' bar, a bar per video over its frames, a bar over the
    iterations of the frame being stylised (the lifecycle hooks), each gone when done."""
    import io

    from nstkit_video.display import VideoDisplay
    from rich.console import Console

    from nstkit.job import JobInfo

    console = Console(file=io.StringIO(), force_terminal=True, width=200)
    display = VideoDisplay(console, live=True)
    display.start(2, 1)
    bars = display.progress.tasks
    assert [t.description for t in bars] == ["videos"]
    display.frame_done("a.mp4", 1, 3, False, 0.5, float("nan"))
    display.frame_done("a.mp4", 2, 3, True, 0.0, 0.0123)
    job = JobInfo(name="a.mp4 frame 3/3", iterations=4, device="cpu", size=(24, 32))
    display.on_job_start(job=job)
    display.on_step(job=job, step=2, losses={"total": 1.0})
    video_bar = next(t for t in display.progress.tasks if t.description == "a.mp4")
    assert (video_bar.completed, video_bar.total) == (2, 3)
    assert video_bar.fields["info"] == "frame 2: resumed, warping error 0.0123"
    assert [t.description for t in display.progress.tasks] == [
        "videos", "a.mp4", "a.mp4 frame 3/3"]
    display.on_job_end(job=job)
    display.video_finished("a.mp4", "done", 1.5)
    display.close()
    assert [t.description for t in display.progress.tasks] == ["videos"]
    assert display.progress.tasks[0].completed == 1
    text = console.file.getvalue()
    assert "1 video(s) already done" in text
    assert "[1/2] a.mp4: done in 1.5 s" in text


def test_independent_mode_and_dry_run(video, inputs, tmp_path):
    out = tmp_path / "out"
    args = (inputs / "tiny.yaml", "--input", inputs / "pan", "--style", inputs / "style.png",
            "--out", out)
    dry = video(*args, "--dry-run")
    assert dry.exit_code == 0
    assert "1 to do, 0 done" in dry.output
    assert not out.exists()
    assert video(*args, "--mode", "independent", "-q").exit_code == 0
    frames = _records(out / "pan__style__tiny" / "manifest.jsonl")
    assert {r["mode"] for r in frames} == {"independent"}
    assert "temporal" not in frames[1]["losses"]
    # consistent is another setting: the video is not skipped, its frames are redone
    assert video(*args, "-q").exit_code == 0
    assert _records(out / "manifest.jsonl")[-1]["resumed_frames"] == 0


def test_usage_errors(video, inputs, tmp_path):
    common = ("--style", inputs / "style.png", "--out", tmp_path / "out")
    missing = video(inputs / "tiny.yaml", "--input", tmp_path / "nope.mp4", *common)
    assert missing.exit_code == 2
    assert "does not exist" in missing.output
    engine = video(inputs / "tiny.yaml", "--input", inputs / "pan", *common, "--engine", "x")
    assert engine.exit_code == 2
    assert "--engine local or ray" in engine.output


def test_raft_without_its_weights_is_a_usage_error(video, inputs, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    result = video(inputs / "tiny.yaml", "--input", inputs / "pan", "--style",
                   inputs / "style.png", "--out", tmp_path / "out", "--flow", "raft")
    assert result.exit_code == 2
    assert "RAFT weights" in result.output
    assert "--flow dis" in result.output


def test_ctrl_c_keeps_the_finished_frames(video, inputs, tmp_path):
    class Stop:
        @nstkit.hookimpl
        def on_job_start(self, job):
            if job.extra.get("frame") == 3:
                raise KeyboardInterrupt

    get_host().add(Stop(), name="stop")
    out = tmp_path / "out"
    args = (inputs / "tiny.yaml", "--input", inputs / "pan", "--style", inputs / "style.png",
            "--out", out, "-q")
    stopped = video(*args)
    assert stopped.exit_code == 130
    assert len(_records(out / "pan__style__tiny" / "manifest.jsonl")) == 2
    get_host().remove("stop")
    assert video(*args).exit_code == 0
    assert _records(out / "manifest.jsonl")[-1]["resumed_frames"] == 2


_KILLABLE = textwrap.dedent("""
    import sys, typer
    from nstkit.testing import add_tiny_extractor
    from nstkit_video import plugin

    add_tiny_extractor()
    app = typer.Typer()
    app.callback()(lambda: None)
    plugin.register_commands(cli=app)
    app(sys.argv[1:])
""")


@pytest.mark.slow
def test_resumes_after_kill_9(video, inputs, tmp_path):
    picture = load_image(samples_dir() / "content" / "coffee.jpg")
    write_frames(panning_clip(picture, 24, (24, 32), (1, 2)), tmp_path / "long")
    out = tmp_path / "out"
    args = [inputs / "tiny.yaml", "--input", tmp_path / "long", "--style",
            inputs / "style.png", "--out", out, "-q", "--iterations", "20"]
    process = subprocess.Popen([sys.executable, "-c", _KILLABLE, "video", *map(str, args)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    manifest = out / "long__style__tiny" / "manifest.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if manifest.exists() and len(manifest.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    kept = len(_records(manifest))
    assert 3 <= kept < 24
    result = video(*args)
    assert result.exit_code == 0, result.output
    record = _records(out / "manifest.jsonl")[-1]
    assert (record["frames"], record["resumed_frames"]) == (24, kept)
    assert not list((out / "long__style__tiny" / "frames").glob(".*.tmp"))


@pytest.mark.slow
def test_the_ray_engine_runs_whole_videos(video, inputs, tmp_path):
    pytest.importorskip("ray")
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        out = tmp_path / "out"
        result = video(inputs / "tiny.yaml", "--input", inputs / "pan", "--input",
                       inputs / "clip.mp4", "--style", inputs / "style.png", "--out", out,
                       "-q", "--engine", "ray", "--set", "extractor.name=vgg19", "--size",
                       "32", "--iterations", "2")
    finally:
        ray.shutdown()
    assert result.exit_code == 0, result.output
    records = _records(out / "manifest.jsonl")
    assert {r["output"] for r in records} == {"pan__style__tiny.mp4", "clip__style__tiny.mp4"}
    assert all(r["status"] == "done" and r["worker"] == {"engine": "ray"} for r in records)
    for record in records:
        frames = _records(out / Path(record["output"]).stem / "manifest.jsonl")
        assert [r["frame"] for r in frames] == [1, 2, 3, 4]


@pytest.mark.slow
def test_vgg19_reports_the_warping_error_of_the_known_motion(video, tmp_path):
    """The real VGG19 (``preview``) on a pan whose motion is known: the warping error the
    command reports (estimated flow) is the true motion's, and consistent frames flicker
    less than independent ones."""
    picture = load_image(samples_dir() / "content" / "chelsea.jpg")
    step = (1, 2)
    frames = panning_clip(picture, 3, (36, 48), step, start=(40, 60))
    write_frames(frames, tmp_path / "pan")
    style = samples_dir() / "style" / "starry_night.jpg"
    errors = {}
    for mode in ("independent", "consistent"):
        out = tmp_path / mode
        result = video("preview", "--input", tmp_path / "pan", "--style", style, "--out", out,
                       "--size", "48", "--iterations", "12", "--mode", mode, "-q")
        assert result.exit_code == 0, result.output
        record = _records(out / "manifest.jsonl")[-1]
        images = [load_image(p) for p in sorted((out / "pan__starry_night__preview" / "frames")
                                                .glob("*.png"))]
        flow, mask = pan_flow((36, 48), step)
        true = [warping_error(b, warp(a, flow), mask) for a, b in itertools.pairwise(images)]
        errors[mode] = (record["warping_error"], sum(true) / len(true))
    reported, true = errors["independent"]
    assert reported == pytest.approx(true, rel=0.15)
    assert errors["consistent"][1] < 0.5 * errors["independent"][1]
