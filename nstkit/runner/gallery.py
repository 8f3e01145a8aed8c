"""``OUT/index.html``: one page showing every job of an output folder.

A thumbnail per output (linking to the full image), grouped by content or by style (a toggle
that needs no script), with each job's recipe, strength, size, time and final losses, and the
failed jobs with their errors. Built from the manifests of every shard and engine
(:func:`nstkit.runner.manifest.latest_records`), so it shows a whole sharded or Ray run.
Thumbnails go to ``OUT/.thumbs/`` (named by the output's sha256, written once, loaded lazily)
so the page stays light however many jobs the folder holds. Imports Pillow, not torch.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image

from nstkit.atomic import atomic_file, write_atomic
from nstkit.runner.manifest import latest_records

GALLERY = "index.html"
THUMBS = ".thumbs"
THUMB_SIDE = 256  # px, the longest side of a thumbnail

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h2 { margin: 1.2em 0 0.4em; font-size: 1.05em; word-break: break-all; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; width: 256px; font-size: 0.78em; }
figure img { display: block; max-width: 256px; max-height: 256px; border: 1px solid #ddd; }
figcaption { margin-top: 4px; line-height: 1.35; word-break: break-all; }
.failed { color: #a00; }
#by-style:checked ~ .by-content, #by-content:checked ~ .by-style { display: none; }
label { margin-right: 1em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
"""


def write_gallery(out_dir: Path) -> Path:
    """Write ``out_dir/index.html`` (atomically) and any thumbnail not written yet.

    Returns:
        The page's path.
    """
    records = sorted(latest_records(out_dir).values(), key=lambda r: r["output"])
    done = [r for r in records if r.get("status") == "done" and _inside(out_dir, r["output"])]
    failed = [r for r in records if r.get("status") == "failed"]
    thumbs = {r["output"]: _thumbnail(out_dir, r) for r in done}
    page = _page(out_dir.name, done, failed, thumbs)
    return write_atomic(out_dir / GALLERY, page)


def _inside(out_dir: Path, output: str) -> bool:
    """A recorded output that lies in ``out_dir`` (a manifest is data, not trusted paths)."""
    root = out_dir.resolve()
    return (root / output).resolve().is_relative_to(root)


def _thumbnail(out_dir: Path, record: dict[str, Any]) -> tuple[str, int, int] | None:
    """``(relative path, width, height)`` of the output's thumbnail, written if missing;
    ``None`` when the output cannot be read."""
    digest = record.get("output_sha256") or ""
    name = f"{THUMBS}/{digest[:24] or Path(record['output']).stem}.jpg"
    target = out_dir / name
    try:
        if not target.is_file():
            with Image.open(out_dir / record["output"]) as image:
                image = image.convert("RGB")
                image.thumbnail((THUMB_SIDE, THUMB_SIDE))
                target.parent.mkdir(exist_ok=True)
                with atomic_file(target) as handle:
                    image.save(handle, format="JPEG", quality=85)
        with Image.open(target) as thumb:
            return name, thumb.width, thumb.height
    except OSError:
        return None


def _caption(record: dict[str, Any]) -> str:
    """Recipe, strength, size, time and final losses, as HTML."""
    data = record.get("recipe_data") or {}
    size = record.get("size")
    losses = record.get("losses") or {}
    facts = [f"<b>{html.escape(str(record.get('recipe')))}</b>",
             f"strength {data.get('strength', 1)}",
             "x".join(map(str, reversed(size))) + " px" if size else "",
             f"{record.get('wall_time', 0):.1f} s"]
    scores = " ".join(f"{html.escape(k)} {v:.3g}" for k, v in losses.items()
                      if isinstance(v, (int, float)))
    return " · ".join(f for f in facts if f) + (f"<br>{scores}" if scores else "")


def _figure(record: dict[str, Any], thumb: tuple[str, int, int] | None) -> str:
    href = html.escape(record["output"])
    if thumb is None:
        image = '<span class="failed">(output unreadable)</span>'
    else:
        src, width, height = thumb
        image = (f'<img src="{html.escape(src)}" width="{width}" height="{height}" '
                 f'loading="lazy" alt="{href}">')
    return (f'<figure><a href="{href}">{image}</a><figcaption>{href}<br>'
            f"{_caption(record)}</figcaption></figure>")


def _groups(records: Iterable[dict[str, Any]], key: str) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        grouped.setdefault(str((record.get(key) or {}).get("path")), []).append(record)
    return dict(sorted(grouped.items()))


def _section(css: str, records: list[dict[str, Any]], key: str,
             thumbs: dict[str, tuple[str, int, int] | None]) -> str:
    body = "".join(f"<h2>{html.escape(Path(group).name)} <small>({len(items)})</small></h2>"
                   f'<div class="grid">{"".join(_figure(r, thumbs[r["output"]]) for r in items)}'
                   f"</div>" for group, items in _groups(records, key).items())
    return f'<div class="{css}">{body}</div>'


def _failures(failed: list[dict[str, Any]]) -> str:
    if not failed:
        return ""
    rows = "".join(f"<tr><td>{html.escape(r['output'])}</td>"
                   f"<td>{html.escape(str(r.get('recipe')))}</td>"
                   f"<td class=\"failed\">{html.escape(str(r.get('error')))}</td></tr>"
                   for r in failed)
    return (f"<h2 class=\"failed\">{len(failed)} failed</h2><table><tr><th>output</th>"
            f"<th>recipe</th><th>error</th></tr>{rows}</table>")


def _page(title: str, done: list[dict[str, Any]], failed: list[dict[str, Any]],
          thumbs: dict[str, tuple[str, int, int] | None]) -> str:
    name = html.escape(title)
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{name}</title>"
            f"<style>{STYLE}</style></head><body><h1>{name}: {len(done)} done, "
            f"{len(failed)} failed</h1>"
            '<input type="radio" name="group" id="by-content" checked>'
            '<label for="by-content">by content</label>'
            '<input type="radio" name="group" id="by-style">'
            '<label for="by-style">by style</label>'
            f"{_section('by-content', done, 'content', thumbs)}"
            f"{_section('by-style', done, 'style', thumbs)}"
            f"{_failures(failed)}</body></html>\n")
