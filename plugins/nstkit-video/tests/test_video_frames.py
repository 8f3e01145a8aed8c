"""Reading clips and frame folders, encoding the result, and the errors for bad input."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")
pytest.importorskip("nstkit_video", reason="nstkit-video is not installed: "
                    "pip install -e plugins/nstkit-video")

from nstkit_video.frames import VideoError, encode_video, input_sha256, open_source  # noqa: E402
from nstkit_video.synthetic import panning_clip, write_clip, write_frames  # noqa: E402

from nstkit.image import load_image  # noqa: E402
from nstkit.samples import samples_dir  # noqa: E402


@pytest.fixture(scope="module")
def frames() -> list[torch.Tensor]:
    picture = load_image(samples_dir() / "content" / "coffee.jpg")
    return panning_clip(picture, 5, (24, 32), (1, 2))


def _streams(path: Path) -> tuple[int, Fraction, bool]:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        count = sum(1 for _ in container.decode(video))
        return count, Fraction(video.average_rate), bool(container.streams.audio)


def test_a_frame_folder_is_read_in_order(frames, tmp_path):
    write_frames(frames, tmp_path / "clip")
    source = open_source(tmp_path / "clip", fps=12.5)
    assert (source.kind, source.size, source.count, source.fps) == ("frames", (24, 32), 5,
                                                                    Fraction(25, 2))
    read = list(source.frames())
    expected = (frames[3][0].permute(1, 2, 0) * 255).round().byte().numpy()
    assert np.array_equal(read[3], expected)
    assert open_source(tmp_path / "clip").fps == 25


def test_a_clip_is_decoded_with_its_rate_and_audio(frames, tmp_path):
    path = write_clip(frames, tmp_path / "clip.mp4", fps=12, audio=True)
    source = open_source(path)
    assert (source.kind, source.size, source.fps, source.audio) == ("video", (24, 32),
                                                                   Fraction(12), True)
    read = list(source.frames())
    assert len(read) == 5
    expected = (frames[2][0].permute(1, 2, 0) * 255).numpy()
    assert np.abs(read[2] - expected).mean() < 2  # H.264 at crf 0 in yuv444p: near lossless


def test_encoding_keeps_the_rate_copies_the_audio_and_pads_odd_sides(frames, tmp_path):
    clip = write_clip(frames, tmp_path / "clip.mp4", fps=12, audio=True)
    odd = write_frames([f[..., :23, :31] for f in frames], tmp_path / "odd")
    out = encode_video(odd, tmp_path / "out.mp4", Fraction(12), audio_from=clip)
    count, rate, audio = _streams(out)
    assert (count, rate, audio) == (5, 12, True)
    assert open_source(out).size == (24, 32)
    silent = encode_video(odd, tmp_path / "silent.mp4", Fraction(30000, 1001))
    assert _streams(silent)[1:] == (Fraction(30000, 1001), False)


def test_input_hash_follows_the_frames(frames, tmp_path):
    write_frames(frames, tmp_path / "clip")
    before = input_sha256(tmp_path / "clip")
    write_frames(frames[:1], tmp_path / "clip")  # rewrites frame 1 with the same pixels
    assert input_sha256(tmp_path / "clip") == before
    write_frames(frames[1:2], tmp_path / "clip")
    assert input_sha256(tmp_path / "clip") != before


def test_frames_of_different_sizes(frames, tmp_path):
    write_frames(frames[:2], tmp_path / "mixed")
    write_frames(frames[:1], tmp_path / "other")
    (tmp_path / "other" / "frame_0001.png").rename(tmp_path / "mixed" / "frame_0003.png")
    write_frames([frames[0][..., :20, :30]], tmp_path / "small")
    (tmp_path / "small" / "frame_0001.png").rename(tmp_path / "mixed" / "frame_0004.png")
    with pytest.raises(VideoError, match=r"mixed: frames of different sizes: frame 4 "
                                         r"\(frame_0004.png\) is 30x20, the first is 32x24"):
        open_source(tmp_path / "mixed")


def test_an_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no frames")
    with pytest.raises(VideoError, match="empty: a folder with no frames"):
        open_source(tmp_path / "empty")


def test_a_missing_input(tmp_path):
    with pytest.raises(VideoError, match="no such file or folder"):
        open_source(tmp_path / "gone.mp4")


def test_a_truncated_clip(frames, tmp_path):
    path = write_clip(frames, tmp_path / "clip.mp4")
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match=r"cut\.mp4: .*truncated or damaged"):
        list(open_source(cut).frames())


def test_not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 20)
    with pytest.raises(VideoError, match=r"notes\.mp4: not a readable video"):
        open_source(path)


def test_a_clip_with_no_frames(tmp_path):
    path = tmp_path / "empty.avi"
    with av.open(str(path), mode="w") as out:  # a header, a video stream, no packets
        stream = out.add_stream("mpeg4", rate=12)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        out.start_encoding()
    with pytest.raises(VideoError, match=r"empty\.avi: a video with no frames"):
        open_source(path)


def test_a_clip_with_only_audio(tmp_path):
    path = tmp_path / "sound.m4a"
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("aac", rate=44100)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                           layout="mono")
        frame.sample_rate = 44100
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    with pytest.raises(VideoError, match=r"sound\.m4a: no video stream in the file"):
        open_source(path)


def test_an_unknown_codec(frames, tmp_path):
    """A Matroska file whose codec id names no codec FFmpeg knows (the same length, so the
    file stays well-formed)."""
    path = write_clip(frames, tmp_path / "clip.mkv", codec="mpeg4")
    data = path.read_bytes()
    assert b"V_MS/VFW/FOURCC" in data or b"V_MPEG4/ISO/ASP" in data
    data = data.replace(b"V_MPEG4/ISO/ASP", b"V_NSTKIT/NONEXS").replace(
        b"V_MS/VFW/FOURCC", b"V_NSTKIT/NONEXS")
    bad = tmp_path / "unknown.mkv"
    bad.write_bytes(data)
    with pytest.raises(VideoError, match=r"unknown\.mkv: unknown video codec"):
        open_source(bad)


def test_frames_turned_by_exif_are_read_upright(frames, tmp_path):
    """JPEG frames stored 32x24 with EXIF orientation 6 (turn 90°): probed and read as
    24x32, as nstkit reads any image."""
    from PIL import Image

    folder = tmp_path / "turned"
    folder.mkdir()
    for index, frame in enumerate(frames[:2], 1):
        pixels = (frame[0].permute(1, 2, 0) * 255).round().byte().numpy()
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.fromarray(pixels).save(folder / f"{index}.jpg", exif=exif, quality=95)
    source = open_source(folder)
    assert source.size == (32, 24)
    assert [f.shape for f in source.frames()] == [(32, 24, 3)] * 2
