"""Stylising a clip frame by frame (the API under ``nstkit video``), with a tiny extractor:
temporal consistency on a pan whose motion is known, per-frame records and resuming."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
import torch

pytest.importorskip("nstkit_video", reason="nstkit-video is not installed: "
                    "pip install -e plugins/nstkit-video")

import itertools

from nstkit_video import plugin as video_plugin
from nstkit_video.clip import (
    DEFAULT_TEMPORAL_WEIGHT,
    VideoSettings,
    later_config,
    stylise_video,
    video_config,
)
from nstkit_video.flow import warp, warping_error
from nstkit_video.synthetic import pan_flow, panning_clip, write_frames

import nstkit
from nstkit.config import StylizeConfig
from nstkit.image import load_image
from nstkit.samples import samples_dir
from nstkit.testing import TinyExtractor, make_host, tiny_images

STEP = (1, 2)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    picture = load_image(samples_dir() / "content" / "chelsea.jpg")
    folder = tmp_path_factory.mktemp("clip") / "pan"
    write_frames(panning_clip(picture, 4, (48, 64), STEP, start=(40, 60)), folder)
    return folder


def _config(**changes: object) -> StylizeConfig:
    data = {"size": 64, "init": "noise", "noise_scale": 0.5,
            "optimizer": {"name": "lbfgs", "iterations": 4},
            "losses": [{"name": "content", "weight": 1.0},
                       {"name": "gram", "weight": 1.0}], **changes}
    return StylizeConfig.model_validate(data)


def _run(clip: Path, out: Path, mode: str = "consistent", **kwargs: object):
    frames = []
    settings = kwargs.pop("settings", VideoSettings(mode=mode))
    result = stylise_video(clip, tiny_images(32).style, kwargs.pop("config", _config()), out,
                           "pan.mp4", settings=settings, host=kwargs.pop(
                               "host", make_host(video_plugin)),
                           report=lambda outcome, total: frames.append(outcome),
                           overrides={"extractor": TinyExtractor()}, **kwargs)
    return result, frames


def _true_error(frames) -> float:
    flow, mask = pan_flow(tuple(frames[0].image.shape[-2:]), STEP)
    errors = [warping_error(b.image, warp(a.image, flow), mask)
              for a, b in itertools.pairwise(frames)]
    return sum(errors) / len(errors)


def test_consistent_frames_flicker_less_than_independent_ones(clip, tmp_path):
    """From noise, each independent frame finds its own texture; warped starts and the
    temporal loss keep the previous one (the warping error with the true motion)."""
    alone, independent = _run(clip, tmp_path / "a", "independent")
    result, consistent = _run(clip, tmp_path / "b", "consistent")
    assert _true_error(consistent) < 0.5 * _true_error(independent)
    assert result.frames == 4
    assert result.resumed == 0
    # the error reported with the estimated (DIS) flow is the true motion's, within 10 %
    # (the consistent frames are optimised towards the estimated warp: theirs reads lower)
    assert alone.warping_error == pytest.approx(_true_error(independent), rel=0.1)
    assert result.warping_error < 0.5 * alone.warping_error
    assert "temporal" in consistent[1].losses
    assert "temporal" not in independent[1].losses


def test_writes_frames_a_record_each_and_the_video(clip, tmp_path):
    result, _ = _run(clip, tmp_path)
    folder = tmp_path / "pan"
    assert sorted(p.name for p in (folder / "frames").iterdir()) == [
        "000001.png", "000002.png", "000003.png", "000004.png"]
    records = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == [1, 2, 3, 4]
    assert records[0]["warping_error"] is None
    assert records[1]["warping_error"] > 0
    assert {r["mode"] for r in records} == {"consistent"}
    assert (tmp_path / "pan.mp4").is_file()
    assert result.video_sha256
    assert result.fps == 25
    assert result.size == (48, 64)


def test_resumes_after_the_last_finished_frame_with_the_same_result(clip, tmp_path):
    _, whole = _run(clip, tmp_path / "whole")

    class Stop:
        """Ctrl-C as frame 3 starts."""

        @nstkit.hookimpl
        def on_job_start(self, job):
            if job.extra.get("frame") == 3:
                raise KeyboardInterrupt

    host = make_host(video_plugin, Stop())
    with pytest.raises(KeyboardInterrupt):
        _run(clip, tmp_path / "cut", host=host)
    manifest = tmp_path / "cut" / "pan" / "manifest.jsonl"
    assert len(manifest.read_text().splitlines()) == 2
    with manifest.open("a") as handle:
        handle.write('{"output": "frames/000003.png", "sta')  # a record torn by kill -9
    result, resumed = _run(clip, tmp_path / "cut")
    assert [f.resumed for f in resumed] == [True, True, False, False]
    assert result.resumed == 2
    for mine, theirs in zip(resumed, whole, strict=True):
        assert torch.equal(mine.image, theirs.image)
    again, _ = _run(clip, tmp_path / "cut")
    assert again.resumed == 4


def test_other_settings_or_a_changed_frame_redo_from_there(clip, tmp_path):
    _run(clip, tmp_path)
    _, frames = _run(clip, tmp_path, config=_config(seed=1))
    assert not any(f.resumed for f in frames)
    frame = load_image(clip / "frame_0003.png")
    changed = tmp_path / "changed"
    write_frames([load_image(p) for p in sorted(clip.iterdir())], changed)
    write_frames([frame * 0.5], changed / "x")
    (changed / "x" / "frame_0001.png").replace(changed / "frame_0003.png")
    _run(changed, tmp_path / "other")
    _, frames = _run(changed, tmp_path / "other")
    assert [f.resumed for f in frames] == [True] * 4
    (changed / "frame_0003.png").write_bytes((clip / "frame_0003.png").read_bytes())
    _, frames = _run(changed, tmp_path / "other")
    assert [f.resumed for f in frames] == [True, True, False, False]


def test_video_config_adds_keeps_or_drops_the_temporal_term():
    host = make_host(video_plugin)
    plain = _config()
    added = video_config(plain, VideoSettings(), host)
    assert [(t.name, t.weight) for t in added.losses][-1] == ("temporal",
                                                              DEFAULT_TEMPORAL_WEIGHT)
    own = _config(losses=[{"name": "content"}, {"name": "temporal", "weight": 7.0}])
    assert video_config(own, VideoSettings(), host).losses[-1].weight == 7.0
    assert video_config(own, VideoSettings(temporal_weight=3), host).losses[-1].weight == 3
    for settings in (VideoSettings(mode="independent"), VideoSettings(temporal_weight=0)):
        assert [t.name for t in video_config(own, settings, host).losses] == ["content"]


def test_later_frames_run_the_last_stage_only():
    config = _config(multiscale={"scales": [0.5, 1.0], "iterations": [0.75, 0.25]},
                     optimizer={"name": "lbfgs", "iterations": 40})
    later = later_config(config, VideoSettings())
    assert later.multiscale is None
    assert later.iterations == 10
    assert later_config(config, VideoSettings(later_stages="all")) is config
    assert later_config(config, VideoSettings(mode="independent")) is config


def test_an_unreadable_frame_stops_the_clip_after_the_frames_before_it(clip, tmp_path):
    """A damaged frame file mid-folder: a VideoError naming it; the frames before it are
    saved and recorded, so the clip resumes there once the file is fixed."""
    from nstkit_video.frames import VideoError

    damaged = tmp_path / "damaged"
    write_frames([load_image(p) for p in sorted(clip.iterdir())], damaged)
    good = (damaged / "frame_0003.png").read_bytes()
    (damaged / "frame_0003.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(VideoError, match=r"damaged: frame 3 \(frame_0003\.png\) cannot be "
                                         r"read: .*truncated"):
        _run(damaged, tmp_path / "out")
    records = [json.loads(line) for line in
               (tmp_path / "out" / "pan" / "manifest.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == [1, 2]
    assert not (tmp_path / "out" / "pan.mp4").exists()
    (damaged / "frame_0003.png").write_bytes(good)
    result, frames = _run(damaged, tmp_path / "out")
    assert [f.resumed for f in frames] == [True, True, False, False]
    assert result.frames == 4


def test_another_frame_rate_reencodes_the_same_frames(clip, tmp_path):
    _run(clip, tmp_path)
    result, frames = _run(clip, tmp_path, settings=VideoSettings(fps=12.5))
    assert all(f.resumed for f in frames)
    assert result.fps == Fraction(25, 2)
    import av

    with av.open(str(tmp_path / "pan.mp4")) as container:
        assert Fraction(container.streams.video[0].average_rate) == Fraction(25, 2)
