"""Bad input images: each fails alone with a message naming the file, the rest are stylised.

One ``nstkit run`` over a folder of generated good and bad images (module fixture), then one
test per kind of input; plus what loading makes of each image mode, pixel by pixel.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile
from typer.testing import CliRunner

from nstkit.cli import app
from nstkit.errors import ImageError
from nstkit.image import load_image
from nstkit.plugins import reset_host
from nstkit.runner.manifest import file_sha256

STYLE = "starry_night.png"


def _source(tiny: Path) -> Image.Image:
    return Image.open(tiny / "content" / "chelsea.png").convert("RGB")


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A 100-byte PNG whose header declares ``width x height`` RGB pixels (a bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def halves(width: int, height: int) -> Image.Image:
    """Red left half, blue right half."""
    image = Image.new("RGB", (width, height), (255, 0, 0))
    image.paste((0, 0, 255), (width // 2, 0, width, height))
    return image


def exif_rotated(path: Path) -> Path:
    """A 48x32 photo stored sideways with EXIF orientation 6 (display: rotate 90° clockwise)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    halves(48, 32).save(path, exif=exif, quality=95)
    return path


def make_inputs(folder: Path, tiny: Path) -> None:
    """Every kind of input image the suite tries, good and bad, in one folder."""
    source = _source(tiny)
    folder.mkdir()
    source.save(folder / "ok.png")
    source.save(folder / "whole.jpg")
    jpeg = (folder / "whole.jpg").read_bytes()
    (folder / "whole.jpg").unlink()
    (folder / "truncated_jpeg.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    png = (folder / "ok.png").read_bytes()
    (folder / "truncated_png.png").write_bytes(png[: len(png) // 2])
    (folder / "zero_bytes.png").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not a picture\n")
    png_claiming(folder / "bomb.png", 10_000, 10_000)
    source.convert("CMYK").save(folder / "cmyk.jpg")
    grey16 = np.asarray(source.convert("L"), dtype=np.uint16) * 257
    Image.fromarray(grey16).save(folder / "grey16.png")
    source.convert("L").save(folder / "grey.png")
    source.convert("P").save(folder / "palette.png")
    rgba = source.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "rgba.png")
    exif_rotated(folder / "exif_rotated.jpg")
    Image.new("RGB", (1, 1), (200, 120, 40)).save(folder / "one_pixel.png")
    Image.new("RGB", (4000, 4), (200, 120, 40)).save(folder / "very_wide.png")
    source.save(folder / "caf\u00e9 au lait \u00fcber.png")
    source.save(folder / "same.png")
    source.rotate(90).save(folder / "same.jpg")


def run_once(content: Path, style: Path, out: Path, *extra: object):
    """``nstkit run gatys`` in-process at test speed, as the ``run`` fixture does: for the
    module-scoped ``batch``, which cannot use that function-scoped fixture."""
    args = ("run", "gatys", "--content", content, "--style", style, "--out", out,
            "--size", "32", "--iterations", "2", "--quiet", *extra)
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def batch(tiny: Path, tmp_path_factory: pytest.TempPathFactory):
    """One run over every input kind (plus an SVG named explicitly): ``(inputs, out, result)``."""
    root = tmp_path_factory.mktemp("bad_inputs")
    make_inputs(root / "in", tiny)
    svg = root / "drawing.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>\n')
    out = root / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NSTKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
        reset_host()
        result = run_once(root / "in", tiny / "style" / STYLE, out, "--content", svg)
        reset_host()
    return root / "in", out, result


FAILING = {
    "truncated_jpeg.jpg": "truncated or damaged (OSError: image file is truncated",
    "truncated_png.png": "truncated or damaged (OSError: image file is truncated",
    "zero_bytes.png": "not an image, or a format Pillow cannot read",
    "text.jpg": "not an image, or a format Pillow cannot read",
    "drawing.svg": "not an image, or a format Pillow cannot read",
    "bomb.png": "10000x10000 px is 100.0 megapixels, over the limit of 89.5",
}


@pytest.mark.slow
def test_the_batch_exits_1_and_counts_every_job(batch, records) -> None:
    inputs, out, result = batch
    assert result.exit_code == 1, result.output
    found = records(out)
    assert len(found) == len(list(inputs.iterdir())) + 1  # + the SVG
    assert len({r["output"] for r in found}) == len(found)  # one record per job, none lost
    failed = sorted(r["output"] for r in found if r["status"] == "failed")
    assert len(failed) == len(FAILING) + 1  # + the very wide image
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(f["output"] for f in summary["failures"]) == failed
    assert summary["done"] == len(found) - len(failed)
    assert all(f"failed: {output}: " in result.stdout for output in failed)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "problem"), FAILING.items())
def test_an_unreadable_image_fails_alone_naming_the_file(batch, by_content, name: str,
                                                         problem: str) -> None:
    _, out, result = batch
    record = by_content(out)[name]
    assert record["status"] == "failed"
    assert record["error"].startswith("ImageError: "), record["error"]
    assert str(Path(record["content"]["path"])) in record["error"]
    assert problem in record["error"]
    assert not (out / record["output"]).exists()
    assert f"{record['output']}: failed in " in result.stderr
    assert f"failed: {record['output']}: ImageError: " in result.stdout  # the failures list


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path: Path, monkeypatch) -> None:
    decoded: list[object] = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self))
    bomb = png_claiming(tmp_path / "bomb.png", 30_000, 30_000)  # over Pillow's own 2x limit
    with pytest.raises(ImageError, match=f"refused image {bomb}: "):
        load_image(bomb)
    quiet = png_claiming(tmp_path / "quiet.png", 10_000, 10_000)  # Pillow only warns
    with pytest.raises(ImageError, match="a decompression bomb"):
        load_image(quiet)
    assert decoded == []


GOOD = ["ok.png", "cmyk.jpg", "grey16.png", "grey.png", "palette.png", "rgba.png",
        "exif_rotated.jpg", "one_pixel.png", "caf\u00e9 au lait \u00fcber.png", "same.png",
        "same.jpg"]


@pytest.mark.slow
@pytest.mark.parametrize("name", GOOD)
def test_an_unusual_but_valid_image_is_stylised(batch, by_content, name: str) -> None:
    _, out, _ = batch
    record = by_content(out)[name]
    assert record["status"] == "done", record["error"]
    target = out / record["output"]
    assert record["output_sha256"] == file_sha256(target)
    image = load_image(target)
    assert max(image.shape[-2:]) == 32
    assert tuple(image.shape[-2:]) == tuple(record["size"])


@pytest.mark.slow
def test_an_exif_rotated_photo_comes_out_upright(batch, by_content) -> None:
    _, out, _ = batch
    record = by_content(out)["exif_rotated.jpg"]
    assert record["size"] == [32, 21]  # stored 48x32 landscape, shown 32x48 portrait


@pytest.mark.slow
def test_names_with_spaces_and_unicode_keep_a_readable_output_name(batch) -> None:
    _, out, _ = batch
    assert (out / "caf\u00e9_au_lait_\u00fcber__starry_night__gatys.png").is_file()


@pytest.mark.slow
def test_inputs_with_the_same_output_name_both_get_their_own_file(batch, by_content) -> None:
    _, out, _ = batch
    same = [by_content(out)[name] for name in ("same.png", "same.jpg")]
    names = {r["output"] for r in same}
    assert len(names) == 2
    assert all(n.startswith("same__starry_night__gatys-") for n in names)
    assert len({file_sha256(out / n) for n in names}) == 2  # neither overwrote the other


@pytest.mark.slow
def test_an_extremely_wide_image_fails_alone_saying_why(batch, by_content) -> None:
    inputs, out, _ = batch
    record = by_content(out)["very_wide.png"]
    assert record["status"] == "failed"
    assert record["content"]["path"] == str(inputs / "very_wide.png")
    assert "a 1x32 px image is too small for layer 'relu5_1'" in record["error"]


@pytest.mark.slow
def test_a_bad_style_image_fails_only_its_jobs(tiny: Path, tmp_path: Path, run,
                                                records) -> None:
    styles = tmp_path / "styles"
    styles.mkdir()
    (styles / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    Image.open(tiny / "style" / STYLE).save(styles / STYLE)
    out = tmp_path / "out"
    result = run(tiny / "content" / "chelsea.png", styles, out)
    assert result.exit_code == 1, result.output
    status = {r["output"]: (r["status"], r["error"]) for r in records(out)}
    assert status["chelsea__starry_night__gatys.png"] == ("done", None)
    assert status["chelsea__broken__gatys.png"][0] == "failed"
    assert f"cannot read image {styles / 'broken.png'}" in status["chelsea__broken__gatys.png"][1]


# --- what loading makes of each mode -----------------------------------------------------------


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = load_image(exif_rotated(tmp_path / "r.jpg"))
    assert image.shape == (1, 3, 48, 32)
    top, bottom = image[0, :, 4, 16], image[0, :, 44, 16]
    assert top.round().tolist() == [1.0, 0.0, 0.0]  # the red left half is now on top
    assert bottom.round().tolist() == [0.0, 0.0, 1.0]


def test_sixteen_bit_greyscale_keeps_its_values(tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, 64 * 16).astype(np.uint16).reshape(16, 64)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    image = load_image(tmp_path / "ramp.png")
    expected = np.broadcast_to(ramp / 65535, (3, 16, 64))
    assert np.abs(image[0].numpy() - expected).max() < 1e-6


def test_transparent_pixels_become_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (4, 2), (255, 0, 0, 255))
    rgba.paste((0, 0, 255, 0), (2, 0, 4, 2))  # right half: blue, fully transparent
    rgba.save(tmp_path / "a.png")
    image = load_image(tmp_path / "a.png")
    assert image[0, :, 0, 0].tolist() == [1.0, 0.0, 0.0]
    assert image[0, :, 0, 3].tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("mode", ["CMYK", "P", "L"])
def test_other_modes_load_as_their_rgb_conversion(tiny: Path, tmp_path: Path, mode: str):
    converted = _source(tiny).convert(mode)
    converted.save(tmp_path / "x.tif")
    expected = np.asarray(converted.convert("RGB"), dtype=np.float32) / 255
    image = load_image(tmp_path / "x.tif")[0].permute(1, 2, 0).numpy()
    assert np.abs(image - expected).max() < 1e-6


@pytest.fixture(scope="module")
def encoded(tiny: Path) -> dict[str, bytes]:
    """A 16x12 image encoded as PNG, JPEG, GIF and 16-bit PNG."""
    small = _source(tiny).resize((16, 12))
    grey16 = Image.fromarray(np.asarray(small.convert("L"), dtype=np.uint16) * 257)
    blobs = {}
    for name, image, kind in (("png", small, "PNG"), ("jpg", small, "JPEG"),
                              ("gif", small.convert("P"), "GIF"), ("png16", grey16, "PNG")):
        buffer = io.BytesIO()
        image.save(buffer, kind)
        blobs[name] = buffer.getvalue()
    return blobs


@settings(max_examples=80, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["png", "jpg", "gif", "png16"]),
       edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
       cut=st.none() | st.integers(0, 10**6))
def test_damaged_bytes_load_or_give_an_image_error(encoded: dict[str, bytes], tmp_path: Path,
                                                  kind: str, edits: list, cut: int | None):
    data = bytearray(encoded[kind])
    for position, value in edits:
        data[position % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    path = tmp_path / "damaged.img"
    path.write_bytes(bytes(data))
    try:
        image, error = load_image(path), ""
    except ImageError as exc:
        image, error = None, str(exc)
    if image is None:
        assert str(path) in error
    else:
        assert image.shape[:2] == (1, 3)
        assert 0 <= image.min() <= image.max() <= 1
