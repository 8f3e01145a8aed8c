"""Multi-scale stages start at the first one large enough for the deepest layer (issue 14's
``nstkit run preview --size 48`` on a 48x30 image)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import nstkit
from nstkit.testing import make_host

pytestmark = pytest.mark.slow  # the real VGG19 weights


@pytest.fixture
def small(tiny: Path, tmp_path: Path) -> Path:
    """A 48x30 px photo: its half size (24x15) is too small for relu5_1, its full size is not."""
    path = tmp_path / "small.png"
    with Image.open(tiny / "content" / "chelsea.png") as image:
        image.convert("RGB").resize((48, 30)).save(path)
    return path


def test_the_preview_recipe_runs_at_48_px_from_its_full_size_stage(
        small: Path, tiny: Path, tmp_path: Path, invoke) -> None:
    out = tmp_path / "out"
    result = invoke("run", "preview", "--content", small, "--style",
                    tiny / "style" / "starry_night.png", "--out", out, "--size", "48",
                    "--iterations", "4", "--quiet")
    assert result.exit_code == 0, result.output
    [record] = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert record["status"] == "done"
    # preview: 3/4 of the steps at half size, 1/4 at full size; the half-size stage is skipped
    # and its steps run at full size
    assert record["stages"] == [[1.0, 4]]
    assert record["size"] == [30, 48]


def test_a_full_size_too_small_names_the_file_and_the_size(small: Path, tiny: Path) -> None:
    with pytest.raises(ValueError, match="too small") as info:
        nstkit.stylize(small, tiny / "style" / "starry_night.png", size=16, iterations=1,
                       device="cpu", host=make_host())
    message = str(info.value)
    assert message.startswith(f"{small}: a 10x16 px image is too small for layer 'relu5_1'")
    assert message.endswith("(asked for size 16)")


def test_a_style_too_small_for_the_deepest_layer_is_named() -> None:
    """The content fits, the (smaller) style does not: a ValueError, not torch's pooling
    error (a coarse stage then skips, as it does for a content too small)."""
    from nstkit.optimisation import compute_targets
    from nstkit.testing import TinyExtractor

    extractor = TinyExtractor()
    with pytest.raises(ValueError, match=r"a 6x8 px style image is too small for layer"):
        compute_targets(extractor, ["relu5_1"], torch.rand(1, 3, 64, 64), [torch.rand(1, 3, 6, 8)],
                        [1.0])


def test_stages_that_fit_are_all_run(small: Path, tiny: Path) -> None:
    result = nstkit.stylize(small, tiny / "style" / "starry_night.png", size=48, iterations=4,
                            multiscale=[(0.5, 1), (1.0, 1)], content_layers=["relu2_2"],
                            style_layers=["relu1_1", "relu2_1"], device="cpu",
                            host=make_host())
    assert result.stages == [[0.5, 2], [1.0, 2]]  # relu2_x fits 24x15
    assert len(result.history["total"]) == 4 + 2
