"""``OUT/index.html``: the gallery ``nstkit run`` writes, checked as files and in Chromium."""

from __future__ import annotations

import json
import re
import shutil
from hashlib import sha256
from pathlib import Path
from urllib.parse import unquote

import pytest
from PIL import Image

from nstkit.runner.gallery import GALLERY, THUMB_SIDE, THUMBS, write_gallery
from tests.test_compare import headless

PROBE = """<script>
window.addEventListener("load", () => {
  const hidden = () => ["by-content", "by-style"].filter(name =>
    getComputedStyle(document.querySelector("." + name)).display === "none").join(",");
  const before = hidden();
  document.getElementById("by-style").click();
  document.body.setAttribute("data-toggle", before + "|" + hidden());
  document.body.setAttribute("data-links",
    Array.from(document.querySelectorAll("a[href]")).map(a => a.href).join(" "));
});
</script>"""


def fake_folder(out: Path, count: int, failed: int = 0) -> None:
    """``count`` done records with small PNG outputs over 10 contents and ``count // 10``
    styles, and ``failed`` failed ones, split over two shards' manifests."""
    out.mkdir(parents=True)
    lines: dict[str, list[str]] = {"manifest.jsonl": [], "manifest.shard-1-of-2.jsonl": []}
    for index in range(count + failed):
        name = f"c{index % 10}__s{index // 10}__fast.png"
        record = {"output": name, "content": {"path": f"/photos/c{index % 10}.jpg"},
                  "style": {"path": f"/paintings/s{index // 10}.jpg"}, "recipe": "fast",
                  "recipe_data": {"strength": 2.0}, "wall_time": 1.5 + index,
                  "size": [24, 32], "losses": {"content": 1.0, "gram": 2.5e4, "total": 2.5e4}}
        if index < count:
            Image.new("RGB", (32, 24), (index % 256, 80, 160)).save(out / name)
            record.update(status="done", output_sha256=sha256(name.encode()).hexdigest())
        else:
            record.update(status="failed", error="OSError: truncated <image>")
        lines[list(lines)[index % 2]].append(json.dumps(record))
    for manifest, records in lines.items():
        (out / manifest).write_text("\n".join(records) + "\n")


def test_every_record_of_every_shard_is_shown_with_its_details(tmp_path: Path) -> None:
    out = tmp_path / "out"
    fake_folder(out, 20, failed=2)
    page = write_gallery(out).read_text()
    assert page.count("<figure>") == 2 * 20  # grouped by content, and by style
    assert 'href="c3__s1__fast.png"' in page
    assert "strength 2.0" in page
    assert "32x24 px" in page
    assert "14.5 s" in page  # index 13's wall time
    assert "gram 2.5e+04" in page
    assert "2 failed" in page
    assert "OSError: truncated &lt;image&gt;" in page  # escaped
    assert page.count("<h2>c0.jpg") == 1
    assert page.count("<h2>s1.jpg") == 1


def test_thumbnails_are_written_once_and_small(tmp_path: Path) -> None:
    out = tmp_path / "out"
    fake_folder(out, 3)
    Image.new("RGB", (1200, 600)).save(out / "c0__s0__fast.png")  # a big output
    write_gallery(out)
    thumbs = sorted((out / THUMBS).iterdir())
    assert len(thumbs) == 3
    assert sorted(max(Image.open(t).size) for t in thumbs) == [32, 32, THUMB_SIDE]
    times = [t.stat().st_mtime_ns for t in thumbs]
    write_gallery(out)
    assert [t.stat().st_mtime_ns for t in sorted((out / THUMBS).iterdir())] == times


def test_outputs_outside_the_folder_and_unreadable_ones_are_not_linked(tmp_path: Path) -> None:
    out = tmp_path / "out"
    fake_folder(out, 2)
    (out / "c1__s0__fast.png").write_bytes(b"not a png")
    with (out / "manifest.jsonl").open("a") as handle:
        handle.write(json.dumps({"output": "../escape.png", "status": "done",
                                 "content": {"path": "x"}, "style": {"path": "y"}}) + "\n")
    page = write_gallery(out).read_text()
    assert "escape.png" not in page
    assert "(output unreadable)" in page


@pytest.mark.slow
def test_nstkit_run_writes_the_gallery_with_failed_jobs(tmp_path: Path, tiny: Path,
                                                       invoke, fast) -> None:
    photos = tmp_path / "photos"
    shutil.copytree(tiny / "content", photos)
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "out"
    result = invoke("run", "gatys", "--content", photos, "--style", tiny / "style" /
                    "starry_night.png", "--out", out, *fast)
    assert result.exit_code == 1
    assert f"gallery: {out / GALLERY}" in result.output
    page = (out / GALLERY).read_text()
    assert page.count("<figure>") == 2 * 2
    assert "broken__starry_night__gatys.png" in page.split("failed</h2>")[1]
    check_in_chromium(out, tmp_path, figures=4)
    (out / GALLERY).unlink()
    rebuilt = invoke("status", out, "--gallery")
    assert f"gallery: {out / GALLERY}" in rebuilt.output
    assert (out / GALLERY).read_text() == page


def check_in_chromium(out: Path, tmp_path: Path, figures: int) -> None:
    """Chromium builds the page: ``figures`` figures, one grouping shown at a time (the
    toggle works), every link resolves to a file of ``out``, every thumbnail named exists."""
    probe = out / "probe.html"
    probe.write_text((out / GALLERY).read_text().replace("</body>", PROBE + "</body>"))
    dom = headless(tmp_path, "--dump-dom", "--virtual-time-budget=10000", probe.as_uri()).stdout
    probe.unlink()
    assert dom.count("<figure>") == figures
    assert re.search(r'data-toggle="([^"]*)"', dom)[1] == "by-style|by-content"  # one shown
    links = re.search(r'data-links="([^"]*)"', dom)[1].split()
    assert len(links) == figures
    for link in links:
        target = Path(unquote(link.removeprefix("file://")))
        assert target.is_file()
        assert target.parent == out.resolve()
    for thumb in re.findall(r'<img src="([^"]+)"', dom):
        assert (out / thumb).is_file()


@pytest.mark.slow
def test_a_thousand_records_stay_light_in_chromium(tmp_path: Path) -> None:
    out = tmp_path / "out"
    fake_folder(out, 1000, failed=5)
    page = write_gallery(out)
    assert page.stat().st_size < 1_500_000  # thumbnails are files, not embedded
    assert "data:image" not in page.read_text()
    assert page.read_text().count('loading="lazy"') == 2000
    assert len(list((out / THUMBS).iterdir())) == 1000
    check_in_chromium(out, tmp_path, figures=2000)
