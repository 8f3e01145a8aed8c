"""``report.html``: one self-contained page (images embedded) with everything compare made."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from typing import Any

from nstkit.compare.variants import Variant

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
img { max-width: 100%; height: auto; border: 1px solid #ddd; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; }
"""

JUDGE_TEXT = (
    "Judged distances are measured the same way for every variant, whatever it optimised: "
    "VGG19 with the original weights and max pooling, the output and the style image resized "
    "to {size} px on the longest side (the content image to the output's shape). "
    "Content: ||F(x) - F(c)|| / ||F(c)|| at {content_layer}. Style: the mean over "
    "{style_layers} of ||G(x) - G(s)|| / ||G(s)|| with G = F F<sup>T</sup> / (H W). "
    "0 is a perfect match; lower is closer.")

COLUMNS = ("variant", "content", "style", "status", "wall_time", "iterations",
           "judged_content", "judged_style")
SUMMARY_COLUMNS = ("variant", "done", "failed", "mean_wall_time", "mean_judged_content",
                   "mean_judged_style")


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value}</td>'
    return f"<td>{html.escape('' if value is None else str(value))}</td>"


def html_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(row.get(c)) for c in columns) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_report(*, title: str, grid_png: bytes, losses_png: bytes,
                  rows: Sequence[dict[str, Any]], summary: Sequence[dict[str, Any]],
                  variants: Sequence[Variant], judge: dict[str, Any], command: str) -> str:
    """The whole page as a string; the two PNGs are embedded as data URIs."""
    recipes = "".join(
        f"<details><summary>{html.escape(v.label)}</summary>"
        f"<pre>{html.escape(v.recipe.to_yaml())}</pre></details>" for v in variants)
    judge_text = JUDGE_TEXT.format(size=judge["size"], content_layer=judge["content_layer"],
                                   style_layers=", ".join(judge["style_layers"]))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p><code>{html.escape(command)}</code></p>
<h2>Contact sheet</h2>
<p>A row per content x style pair; under each output its judged content and style
distances and its wall time.</p>
<img id="grid" alt="contact sheet" src="{data_uri(grid_png)}">
<h2>Summary</h2>
{html_table(summary, SUMMARY_COLUMNS)}
<p>{judge_text}</p>
<h2>Loss curves</h2>
<p>Each recipe's own total loss: not comparable across recipes that optimise different
terms, but it shows how fast each converges.</p>
<img id="losses" alt="loss curves" src="{data_uri(losses_png)}">
<h2>Every job</h2>
{html_table(rows, COLUMNS)}
<h2>Recipes (resolved)</h2>
{recipes}
</body></html>
"""
