"""``report.html``: one self-contained page (images embedded) with everything compare made."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from typing import Any

from nstkit.compare.results import JUDGED, MEANS
from nstkit.compare.variants import Variant
from nstkit.judge import METRIC_LABELS, METRICS

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
img { max-width: 100%; height: auto; border: 1px solid #ddd; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; }
"""

JUDGE_TEXT = """<p>Judged distances are measured the same way for every variant, whatever it
optimised: VGG19 with the original weights and max pooling, the output and the style image
resized to {size} px on the longest side (the content image to the output's shape). Every one
is 0 for a perfect match: <b>lower is better</b>.</p>
<ul>
<li><b>content</b>: ||F(x) - F(c)|| / ||F(c)|| at {content_layer}.</li>
<li><b>1-SSIM</b>: one minus the SSIM of the luma of the output and the content image
({ssim_window} x {ssim_window} Gaussian window, valid windows only).</li>
<li><b>Gram</b> (column <code>style</code>): the mean over {style_layers} of
||G(x) - G(s)|| / ||G(s)|| with G = F F<sup>T</sup> / (H W).</li>
<li><b>W2</b>: the 2-Wasserstein distance between Gaussians fitted to the features (mean and
covariance), relative: sqrt(W2<sup>2</sup> / E|F(s)|<sup>2</sup>), mean over the same
layers.</li>
<li><b>sliced W2</b>: the sliced 2-Wasserstein distance of the features along
{sliced_directions} fixed orthonormal directions per layer ({quantiles} quantiles each),
relative to the style's second moment along them, mean over the same layers.</li>
<li><b>palette ΔE</b>: no network; the sliced 2-Wasserstein distance between the output's and
the style image's pixel colours in CIELAB along {palette_directions} fixed directions, in
ΔE (CIE76) units: two flat colours are exactly their ΔE apart.</li>
</ul>
<p>The relative distances are 1 for an all-zero feature map. The projections are seeded once
(seed {projection_seed}): every output is measured along the same directions.</p>"""

PARETO_TEXT = """<p>Variants are ranked by Pareto dominance over the six mean distances, with no
weighting between them: A dominates B when A is no worse on every distance and better on at
least one. Rank 0 is the set of variants no other variant dominates; rank 1 the set once
rank 0 is removed, and so on.</p>"""

PAIRWISE_TEXT = """<p>Row A, column B: on how many of the {count} style distances (Gram, W2,
sliced W2, palette) A is closer to the style than B while no worse than B on both content
distances; &ndash; when A is worse on content.</p>"""

COLUMNS = ("variant", "content", "style", "status", "wall_time", "iterations", *JUDGED)
SUMMARY_COLUMNS = ("variant", "done", "failed", "mean_wall_time", "pareto_rank", "dominates",
                   *MEANS)
LABELS = {**{f"judged_{m}": METRIC_LABELS[m] for m in METRICS},
          **{f"mean_judged_{m}": "mean " + METRIC_LABELS[m] for m in METRICS},
          "pareto_rank": "Pareto rank", "dominates": "dominates", "wall_time": "time (s)",
          "mean_wall_time": "mean time (s)"}


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _cell(value: Any) -> str:
    if isinstance(value, list):
        value = ", ".join(map(str, value))
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value}</td>'
    return f"<td>{html.escape('' if value is None else str(value))}</td>"


def html_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(LABELS.get(c, c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(row.get(c)) for c in columns) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def pairwise_table(summary: Sequence[dict[str, Any]], pairs: Sequence[dict[str, Any]]) -> str:
    """The style wins of each variant (row) over each other (column); empty for one variant."""
    if not pairs:
        return ""
    wins = {(p["variant"], p["versus"]): p["style_wins"] for p in pairs}
    labels = [item["variant"] for item in summary]
    head = "<th>A \\ B</th>" + "".join(f"<th>{html.escape(b)}</th>" for b in labels)
    body = "".join(
        f"<tr><th>{html.escape(a)}</th>" + "".join(
            "<td></td>" if a == b else
            '<td class="num">&ndash;</td>' if wins.get((a, b)) is None else
            f'<td class="num">{wins[(a, b)]}</td>' for b in labels) + "</tr>"
        for a in labels)
    count = pairs[0]["style_metrics"]
    return (PAIRWISE_TEXT.format(count=count)
            + f'<table id="pairwise"><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
            "</table>")


def render_report(*, title: str, grid_png: bytes, losses_png: bytes, tradeoff_png: bytes,
                  rows: Sequence[dict[str, Any]], summary: Sequence[dict[str, Any]],
                  variants: Sequence[Variant], judge: dict[str, Any], command: str,
                  pairs: Sequence[dict[str, Any]] = ()) -> str:
    """The whole page as a string; the three PNGs are embedded as data URIs. ``pairs`` is
    :func:`nstkit.compare.results.pairwise` of the summary."""
    recipes = "".join(
        f"<details><summary>{html.escape(v.label)}</summary>"
        f"<pre>{html.escape(v.recipe.to_yaml())}</pre></details>" for v in variants)
    judge_text = JUDGE_TEXT.format(**{**judge, "style_layers": ", ".join(judge["style_layers"])})
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p><code>{html.escape(command)}</code></p>
<h2>Contact sheet</h2>
<p>A row per content x style pair; under each output three of its judged distances (content,
Gram, W2; all six are in the tables below) and its wall time.</p>
<img id="grid" alt="contact sheet" src="{data_uri(grid_png)}">
<h2>Trade-off</h2>
<p>Judged content distance against judged Gram style distance (lower is closer on both): a
point per job, a diamond per variant's mean, the Pareto front of the means dashed; the values
of one recipe's <code>--sweep</code> joined in sweep order.</p>
<img id="tradeoff" alt="content against style" src="{data_uri(tradeoff_png)}">
<h2>Summary</h2>
{html_table(summary, SUMMARY_COLUMNS)}
{PARETO_TEXT}
{pairwise_table(summary, pairs)}
{judge_text}
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
