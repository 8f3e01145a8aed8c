"""The comparison's pictures: a labelled contact sheet and the loss curves."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from nstkit.compare.collect import Entry
from nstkit.compare.curves import read_curve
from nstkit.image import load_image, to_pil
from nstkit.judge import Scores

PAD, LINE = 8, 18
BACKGROUND, INK, MISSING = (255, 255, 255), (20, 20, 20), (235, 235, 235)


def _font(size: int = 13) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType
        return ImageFont.load_default()


def _thumb(path: Path, side: int) -> Image.Image:
    """``path`` scaled to fit ``side`` x ``side`` (aspect kept), or a grey square if it cannot
    be read."""
    try:
        image = to_pil(load_image(path))
    except Exception:
        return Image.new("RGB", (side, side), MISSING)
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _fit(draw: ImageDraw.ImageDraw, text: str, width: int, font) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def contact_sheet(pairs: Sequence[tuple[Path, Path]], labels: Sequence[str],
                  cells: dict[tuple[int, int], tuple[Entry, Scores | None]],
                  side: int = 192) -> Image.Image:
    """A row per content x style pair (content and style first), a column per variant.

    ``cells[(row, column)]`` is the entry (and its judged scores) of pair ``row`` and variant
    ``column``; an output that is missing or failed shows as a grey square with its status.
    """
    font = _font()
    headers = ["content", "style", *labels]
    row_height = side + 2 * LINE + PAD
    sheet = Image.new("RGB", (PAD + len(headers) * (side + PAD),
                              LINE + PAD + len(pairs) * row_height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for col, label in enumerate(headers):
        draw.text((PAD + col * (side + PAD), PAD // 2), _fit(draw, label, side, font),
                  fill=INK, font=font)
    for row, (content, style) in enumerate(pairs):
        outputs = [cells[(row, col)] for col in range(len(labels))]
        row_cells = [(content, [content.name]), (style, [style.name]), *(
            (entry.output if entry.status == "done" else None, _captions(entry, score))
            for entry, score in outputs)]
        top = LINE + PAD + row * row_height
        for col, (path, captions) in enumerate(row_cells):
            left = PAD + col * (side + PAD)
            thumb = _thumb(path, side) if path else Image.new("RGB", (side, side), MISSING)
            sheet.paste(thumb, (left + (side - thumb.width) // 2,
                                top + (side - thumb.height) // 2))
            for line, text in enumerate(captions):
                draw.text((left, top + side + 2 + line * LINE), _fit(draw, text, side, font),
                          fill=INK, font=font)
    return sheet


def _captions(entry: Entry, score: Scores | None) -> list[str]:
    if score is None:
        return [entry.status]
    seconds = (entry.record or {}).get("wall_time")
    timing = f"{seconds:.3g} s" if isinstance(seconds, int | float) else ""
    # three of the six distances, to stay readable at 192 px; the tables have all of them
    return [f"content {score.content:.3f}  Gram {score.style:.3f}",
            f"W2 {score.w2:.3f}  {timing}".rstrip()]


def loss_figure(entries: Sequence[Entry]) -> bytes:
    """PNG bytes: total loss against iteration and against wall time, a colour per variant.

    Entries without a recorded curve (outputs reused from ``nstkit run``) are left out and
    counted in the title.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(11, 4), layout="constrained")
    by_step, by_time = fig.subplots(1, 2)
    colours: dict[str, str] = {}
    missing = 0
    for entry in entries:
        curve = read_curve(entry.folder, entry.job.output) if entry.status == "done" else None
        if curve is None or "total" not in curve.losses:
            missing += entry.status == "done"
            continue
        label = entry.variant.label
        first = label not in colours
        colour = colours.setdefault(label, f"C{len(colours) % 10}")
        total = curve.losses["total"]
        by_step.plot(curve.steps, total, color=colour, lw=1.2, label=label if first else None)
        by_time.plot(curve.seconds, total, color=colour, lw=1.2)
    for axis, xlabel in ((by_step, "iteration"), (by_time, "wall time (s)")):
        axis.set_xlabel(xlabel)
        axis.set_ylabel("total loss (the recipe's own)")
        if colours:
            axis.set_yscale("log")
        axis.grid(alpha=0.3)
    if colours:
        by_step.legend(fontsize=8)
    note = f" ({missing} output(s) without a recorded curve)" if missing else ""
    fig.suptitle("loss curves, one line per content x style pair" + note, fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
