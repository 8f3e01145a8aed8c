"""Print output (issue 15): 16-bit PNG and TIFF, and the content's ICC profile and resolution
carried to every output file."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import png
import pytest
import tifffile
import torch
from PIL import Image, ImageCms
from pydantic import ValidationError

from nstkit.config import OutputConfig
from nstkit.image import PrintInfo, load_image, print_info, save_image, to_uint16
from nstkit.plugins import PluginHost
from nstkit.recipe import load_recipe
from nstkit.result import StyleResult
from nstkit.runner.execute import Runner, RunOptions
from nstkit.runner.plan import Job

ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
LAB = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()  # not an RGB profile


def deep_values(height: int = 7, width: int = 9, seed: int = 0) -> torch.Tensor:
    """``(3, H, W)`` integers in ``[0, 65535]``, none of them a multiple of 257 (so none is
    representable in 8 bits)."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.randint(0, 65535, (3, height, width), generator=generator)
    return torch.where(values % 257 == 0, values + 1, values)


def read_raw(path: Path) -> np.ndarray:
    """The stored samples ``(H, W, 3)``, read by the format's own library (not Pillow)."""
    if path.suffix == ".png":
        width, height, rows, info = png.Reader(filename=str(path)).read()
        assert (info["bitdepth"], info["planes"]) == (16, 3)
        return np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(
            height, width, 3)
    return tifffile.imread(path)


def content_image(path: Path, **save: object) -> Path:
    """A small RGB photo-like image, saved with Pillow's ``save`` keywords (dpi, icc...)."""
    pixels = (np.arange(12 * 16 * 3, dtype=np.uint32).reshape(12, 16, 3) * 7 % 256)
    Image.fromarray(pixels.astype(np.uint8)).save(path, **save)
    return path


# --- writing -----------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".png", ".tiff"])
def test_16_bit_files_keep_every_value_exactly(tmp_path: Path, suffix: str) -> None:
    values = deep_values()
    path = save_image(values.double() / 65535, tmp_path / f"deep{suffix}", bit_depth=16)
    raw = read_raw(path)
    assert (raw.dtype, raw.shape) == (np.uint16, (7, 9, 3))
    assert np.array_equal(raw, values.permute(1, 2, 0).numpy())
    back = load_image(path)  # nstkit reads its own 16-bit files at full precision
    assert back.shape == (1, 3, 7, 9)
    assert torch.equal(back[0].double().mul(65535).round().long(), values)
    with Image.open(path) as img:  # Pillow opens them too (at 8 bits)
        assert (img.mode, img.size) == ("RGB", (9, 7))


def test_16_bit_is_round_x_times_65535(tmp_path: Path) -> None:
    image = torch.tensor([0.0, 1e-6, 0.5, 1 / 3, 1.0, 1.5, -0.2]).view(1, 1, 7).expand(3, 1, 7)
    expected = [0, 0, 32768, 21845, 65535, 65535, 0]  # clamped to [0, 1] first
    assert to_uint16(image)[0, :, 0].tolist() == expected
    path = save_image(image, tmp_path / "x.tiff", bit_depth=16)
    assert read_raw(path)[0, :, 1].tolist() == expected


def test_8_bit_tiff_matches_8_bit_png(tmp_path: Path) -> None:
    image = deep_values().float() / 65535
    tiff = save_image(image, tmp_path / "a.tiff")
    assert read_raw(tiff).dtype == np.uint8
    assert torch.equal(load_image(tiff), load_image(save_image(image, tmp_path / "a.png")))


@pytest.mark.parametrize(("suffix", "bit_depth"), [(".png", 8), (".png", 16), (".jpg", 8),
                                                   (".webp", 8), (".tiff", 8), (".tiff", 16)])
def test_icc_profile_and_dpi_are_embedded(tmp_path: Path, suffix: str, bit_depth: int) -> None:
    path = save_image(deep_values().float() / 65535, tmp_path / f"out{suffix}",
                      bit_depth=bit_depth, icc_profile=ICC, dpi=(300.0, 150.0))
    with Image.open(path) as img:
        assert img.info["icc_profile"] == ICC
        dpi = img.info.get("dpi")
    if suffix == ".webp":  # WebP has no resolution field
        assert dpi is None
    else:  # PNG stores pixels per metre: 11811 and 5906, read as 299.9994 and 150.0124
        assert dpi[0] == pytest.approx(300, abs=0.0127)
        assert dpi[1] == pytest.approx(150, abs=0.0127)
        assert print_info(path) == PrintInfo(ICC, (300.0, 150.0))
    if suffix == ".tiff":
        page = tifffile.TiffFile(path).pages[0]
        assert page.tags[34675].value == ICC
        assert page.tags["XResolution"].value == (300, 1)
        assert page.tags["YResolution"].value == (150, 1)
        assert page.tags["ResolutionUnit"].value == tifffile.RESUNIT.INCH
    if (suffix, bit_depth) == (".png", 16):
        _, _, _, info = png.Reader(filename=str(path)).read()
        assert info["physical"] == (11811, 5906, True)


@pytest.mark.parametrize(("suffix", "bit_depth"), [(".png", 8), (".png", 16), (".jpg", 8),
                                                   (".webp", 8), (".tiff", 8), (".tiff", 16)])
def test_nothing_is_embedded_without_a_profile_or_dpi(tmp_path: Path, suffix: str,
                                                      bit_depth: int) -> None:
    path = save_image(deep_values().float() / 65535, tmp_path / f"out{suffix}",
                      bit_depth=bit_depth)
    with Image.open(path) as img:
        assert "icc_profile" not in img.info
        if suffix != ".tiff":  # Pillow reports TIFF's required tags as "resolution"
            assert "dpi" not in img.info
    assert print_info(path) == PrintInfo()
    if suffix == ".tiff":
        page = tifffile.TiffFile(path).pages[0]
        assert 34675 not in page.tags
        assert page.tags["ResolutionUnit"].value == tifffile.RESUNIT.NONE


@pytest.mark.parametrize("name", ["out.jpg", "out.webp"])
def test_16_bits_only_for_png_and_tiff(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="only PNG and TIFF"):
        save_image(torch.rand(3, 4, 4), tmp_path / name, bit_depth=16)
    with pytest.raises(ValueError, match="8 or 16"):
        save_image(torch.rand(3, 4, 4), tmp_path / "out.png", bit_depth=12)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["out.png", "out.tiff"])
def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, name: str,
                                                             monkeypatch) -> None:
    target = tmp_path / name
    target.write_bytes(b"old")

    def broken(self, outfile, rows):  # a disk that fills up half-way
        outfile.write(b"\x89PNG half")
        raise OSError("No space left on device")

    monkeypatch.setattr(png.Writer, "write_packed", broken)
    monkeypatch.setattr(tifffile, "imwrite", lambda *a, **k: broken(None, a[0], None))
    with pytest.raises(OSError, match="No space"):
        save_image(torch.rand(3, 4, 4), target, bit_depth=16, icc_profile=ICC)
    assert list(tmp_path.iterdir()) == [target]
    assert target.read_bytes() == b"old"


# --- reading what the content carries ----------------------------------------------------------
def test_print_info_reads_the_profile_and_dpi(tmp_path: Path) -> None:
    png_file = content_image(tmp_path / "c.png", icc_profile=ICC, dpi=(300, 300))
    assert print_info(png_file) == PrintInfo(ICC, (300.0, 300.0))
    jpg = content_image(tmp_path / "c.jpg", icc_profile=ICC, dpi=(72, 96))
    assert print_info(jpg) == PrintInfo(ICC, (72.0, 96.0))
    odd = content_image(tmp_path / "odd.png", dpi=(101.6, 254))  # 4000 and 10000 px/m
    assert print_info(odd).dpi == pytest.approx((101.6, 254.0))
    assert print_info(content_image(tmp_path / "none.png")) == PrintInfo()
    # Pillow reports a TIFF without resolution tags as 1 x 1 dpi: that is no resolution
    assert print_info(content_image(tmp_path / "none.tiff")) == PrintInfo()


def test_a_profile_that_is_not_rgb_is_not_carried(tmp_path: Path) -> None:
    grey = tmp_path / "grey.png"
    Image.new("L", (8, 8), 100).save(grey, icc_profile=LAB, dpi=(200, 200))
    assert print_info(grey) == PrintInfo(None, (200.0, 200.0))


def test_dpi_follows_an_exif_quarter_turn(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # turned 90 degrees: the upright image's x is the file's y
    path = content_image(tmp_path / "turned.jpg", dpi=(300, 150), exif=exif.tobytes())
    assert print_info(path).dpi == (150.0, 300.0)


def test_16_bit_rgba_png_content_is_read_at_full_precision(tmp_path: Path) -> None:
    values = deep_values(4, 5)
    alpha = np.full((4, 5, 1), 65535, dtype=np.uint16)
    alpha[0, 0] = 0  # one transparent pixel: white, as for 8-bit images
    rows = np.concatenate([values.permute(1, 2, 0).numpy().astype(np.uint16), alpha], axis=2)
    path = tmp_path / "rgba.png"
    with path.open("wb") as handle:
        png.Writer(5, 4, greyscale=False, alpha=True, bitdepth=16).write(
            handle, rows.reshape(4, 20).tolist())
    image = load_image(path)[0]
    assert torch.equal(image[:, 0, 0], torch.ones(3))
    assert torch.equal(image.double().mul(65535).round().long()[:, 1:], values[:, 1:])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_16_bit_tiff_content_is_turned_upright_as_pillow_turns_8_bit(
        tmp_path: Path, orientation: int) -> None:
    eight = (deep_values(3, 5) // 257).to(torch.uint8).permute(1, 2, 0).numpy()
    exif = Image.Exif()
    exif[0x0112] = orientation
    reference = tmp_path / "eight.png"
    Image.fromarray(eight).save(reference, exif=exif.tobytes())
    deep = tmp_path / "deep.tiff"  # the same values, plus 1/65535 where there is room
    tifffile.imwrite(deep, eight.astype(np.uint16) * 257 + (eight < 255),
                     photometric="rgb", extratags=[(0x0112, "H", 1, orientation, True)])
    expected = load_image(reference)
    assert expected.shape[-2:] == ((5, 3) if orientation > 4 else (3, 5))
    difference = (load_image(deep) - expected).abs().max().item()
    assert 1e-5 < difference < 2e-5  # read at 16 bits, turned as Pillow turns the 8-bit one


# --- configuration -----------------------------------------------------------------------------
def test_output_config_accepts_16_bits_for_png_and_tiff_only() -> None:
    assert OutputConfig().bit_depth == 8
    assert OutputConfig(format="tiff", bit_depth=16).bit_depth == 16
    assert OutputConfig(format="png", bit_depth=16).format == "png"
    for form in ("jpg", "webp"):
        with pytest.raises(ValidationError, match=f"bit_depth 16 needs format png or tiff; "
                                                  f"{form} is 8-bit only"):
            OutputConfig(format=form, bit_depth=16)
    for bad in (12, 24, True, "16"):
        with pytest.raises(ValidationError, match="8 or 16"):
            OutputConfig(bit_depth=bad)


def test_validate_names_the_bad_output_keys(tmp_path: Path, invoke) -> None:
    recipe = tmp_path / "print.yaml"
    recipe.write_text("extends: gatys\noutput: {format: jpg, bit_depth: 16}\n")
    result = invoke("validate", recipe)
    assert result.exit_code == 2
    assert f"{recipe}: output: bit_depth 16 needs format png or tiff" in result.output
    recipe.write_text("extends: gatys\noutput: {format: tiff, bit_depth: 16}\n")
    assert invoke("validate", recipe).exit_code == 0


def test_stylize_refuses_16_bits_for_a_jpg_before_running(tiny: Path, tmp_path: Path,
                                                          invoke) -> None:
    content = tiny / "content" / "chelsea.png"
    result = invoke("stylize", content, tiny / "style" / "starry_night.png", "--out",
                    tmp_path / "out.jpg", "--set", "output.bit_depth=16", "--device", "cpu",
                    "-q")
    assert result.exit_code == 2
    assert "out.jpg: output.bit_depth 16 needs a .png, .tif or .tiff file" in result.output
    assert list(tmp_path.iterdir()) == []


def test_the_recipe_hash_changes_only_when_bit_depth_is_not_8() -> None:
    host = PluginHost(autoload=False)
    default = load_recipe("gatys", host=host).hash
    assert default == "3b0381b46ba42ae64297e1c6a75be2e1b40bb15dfcb7e5db68050dc4e8a689f5"
    assert load_recipe("gatys", ["output.bit_depth=8"], host=host).hash == default
    deep = load_recipe("gatys", ["output.bit_depth=16"], host=host).hash
    tiff = load_recipe("gatys", ["output.format=tiff"], host=host).hash
    assert len({default, deep, tiff}) == 3


# --- the runner --------------------------------------------------------------------------------
def finish_one(tmp_path: Path, content: Path, sets: list[str]) -> Path:
    """``Runner.finish`` of a made-up result for one job (no stylisation): the output file."""
    recipe = load_recipe("gatys", sets, host=PluginHost(autoload=False))
    runner = Runner(recipe, RunOptions(out=tmp_path / "out", device="cpu"),
                    PluginHost(autoload=False))
    job = Job(content, content, f"result.{recipe.data['output']['format']}")
    result = StyleResult(image=(deep_values(12, 16).double() / 65535).unsqueeze(0),
                         history={"total": [1.0]}, iterations=0, wall_time=0.0, device="cpu")
    (tmp_path / "out").mkdir(exist_ok=True)
    runner.finish([job], result, 0.0)
    assert [o.status for o in runner.summary.outcomes] == ["done"], runner.summary.outcomes
    return tmp_path / "out" / job.output


@pytest.mark.parametrize(("sets", "deep"), [
    (["output.format=tiff", "output.bit_depth=16"], True),
    (["output.bit_depth=16"], True),
    (["output.format=jpg"], False),
    (["output.format=webp"], False),
    ([], False)])
def test_runner_saves_with_the_contents_profile_and_dpi(tmp_path: Path, sets: list[str],
                                                        deep: bool) -> None:
    content = content_image(tmp_path / "photo.png", icc_profile=ICC, dpi=(240, 240))
    output = finish_one(tmp_path, content, sets)
    with Image.open(output) as img:
        assert img.info["icc_profile"] == ICC
        if output.suffix != ".webp":
            assert all(math.isclose(d, 240, abs_tol=0.0127) for d in img.info["dpi"])
    if deep:
        assert np.array_equal(read_raw(output), deep_values(12, 16).permute(1, 2, 0).numpy())


@pytest.mark.parametrize("fmt", ["png", "tiff"])
def test_runner_embeds_nothing_for_a_plain_content(tmp_path: Path, fmt: str) -> None:
    output = finish_one(tmp_path, content_image(tmp_path / "plain.png"),
                        [f"output.format={fmt}", "output.bit_depth=16"])
    assert print_info(output) == PrintInfo()


@pytest.mark.slow
def test_nstkit_run_writes_16_bit_tiff_with_the_contents_profile(tiny: Path, tmp_path: Path,
                                                                 invoke, fast, records) -> None:
    contents = tmp_path / "contents"
    contents.mkdir()
    with Image.open(tiny / "content" / "chelsea.png") as img:
        img.save(contents / "tagged.png", icc_profile=ICC, dpi=(300, 300))
        img.save(contents / "plain.png")
    out = tmp_path / "out"
    result = invoke("run", "gatys", "--content", contents, "--style",
                    tiny / "style" / "starry_night.png", "--out", out, *fast,
                    "--save-every", "1", "--set", "output.format=tiff",
                    "--set", "output.bit_depth=16")
    assert result.exit_code == 0, result.output
    assert [r["status"] for r in records(out)] == ["done", "done"]
    tagged = out / "tagged__starry_night__gatys.tiff"
    plain = out / "plain__starry_night__gatys.tiff"
    assert print_info(tagged) == PrintInfo(ICC, (300.0, 300.0))
    assert print_info(plain) == PrintInfo()
    page = tifffile.TiffFile(tagged).pages[0]
    assert (page.dtype, page.shape, page.tags[34675].value) == (np.uint16, (22, 32, 3), ICC)
    assert (read_raw(tagged) % 257 != 0).any()  # more than 8 bits of the float result
    snapshots = sorted(p.name for p in (out / "steps" / tagged.stem).iterdir())
    assert snapshots == ["step_00001.tiff", "step_00002.tiff"]  # snapshots: 8-bit tiff
    assert read_raw(out / "steps" / tagged.stem / "step_00001.tiff").dtype == np.uint8


@pytest.mark.slow
def test_nstkit_stylize_carries_the_profile_into_its_out_file(tiny: Path, tmp_path: Path,
                                                              invoke) -> None:
    content = tmp_path / "photo.jpg"
    with Image.open(tiny / "content" / "chelsea.png") as img:
        img.save(content, icc_profile=ICC, dpi=(300, 300), quality=95)
    out = tmp_path / "result.tiff"
    result = invoke("stylize", content, tiny / "style" / "starry_night.png", "--out", out,
                    "--size", "32", "--iterations", "1", "--device", "cpu", "-q",
                    "--set", "output.bit_depth=16")
    assert result.exit_code == 0, result.output
    assert print_info(out) == PrintInfo(ICC, (300.0, 300.0))
    assert read_raw(out).dtype == np.uint16
