"""Writing a finished comparison: grid.png, losses.png, results.csv/json and report.html."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nstkit.atomic import write_atomic
from nstkit.compare.collect import Entry
from nstkit.compare.figures import contact_sheet, loss_figure, png_bytes
from nstkit.compare.report import render_report
from nstkit.compare.results import make_rows, pairwise, summarise, write_results
from nstkit.compare.tradeoff import tradeoff_png
from nstkit.compare.variants import Variant
from nstkit.judge import (
    PALETTE_DIRECTIONS,
    PROJECTION_SEED,
    QUANTILES,
    SLICED_DIRECTIONS,
    SSIM_WINDOW,
    Judge,
    Scores,
)


@dataclass
class Comparison:
    """Everything one ``nstkit compare`` found: entries in variant-major order."""

    out: Path
    variants: Sequence[Variant]
    pairs: Sequence[tuple[Path, Path]]
    entries: Sequence[Entry]
    scores: Sequence[Scores | None]
    command: str

    def rows(self) -> list[dict[str, Any]]:
        return make_rows(self.entries, self.scores, self.out)

    def sweeps(self) -> list[list[str]]:
        """The labels of each recipe run at several ``--sweep`` values, in sweep order."""
        groups: dict[str, list[str]] = {}
        for variant in self.variants:
            groups.setdefault(variant.recipe.name, []).append(variant.label)
        return [labels for labels in groups.values() if len(labels) > 1]

    def cells(self) -> dict[tuple[int, int], tuple[Entry, Scores | None]]:
        row_of = {pair: i for i, pair in enumerate(self.pairs)}
        col_of = {variant.label: i for i, variant in enumerate(self.variants)}
        return {(row_of[(e.job.content, e.job.style)], col_of[e.variant.label]): (e, s)
                for e, s in zip(self.entries, self.scores, strict=True)}


def judge_details(judge: Judge) -> dict[str, Any]:
    return {"extractor": "vgg19, original weights, max pooling", "size": judge.size,
            "content_layer": judge.content_layer, "style_layers": list(judge.style_layers),
            "ssim_window": SSIM_WINDOW, "sliced_directions": SLICED_DIRECTIONS,
            "palette_directions": PALETTE_DIRECTIONS, "quantiles": QUANTILES,
            "projection_seed": PROJECTION_SEED}


def publish(comparison: Comparison, judge: Judge, thumb: int = 192) -> dict[str, Path]:
    """Write the six files into ``comparison.out``, each atomically; returns their paths."""
    out = comparison.out
    rows = comparison.rows()
    grid = png_bytes(contact_sheet(comparison.pairs, [v.label for v in comparison.variants],
                                   comparison.cells(), thumb))
    losses = loss_figure(comparison.entries)
    tradeoff = tradeoff_png(rows, comparison.sweeps())
    details = {"command": comparison.command,
               "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "judge": judge_details(judge),
               "recipes": {v.label: {"folder": v.folder, "hash": v.recipe.hash,
                                     "data": v.recipe.data} for v in comparison.variants}}
    csv_path, json_path = write_results(out, rows, details)
    summary = summarise(rows)
    page = render_report(title="nstkit compare: " + " vs ".join(
                             v.label for v in comparison.variants),
                         grid_png=grid, losses_png=losses, tradeoff_png=tradeoff, rows=rows,
                         summary=summary,
                         pairs=pairwise(summary),
                         variants=comparison.variants, judge=details["judge"],
                         command=comparison.command)
    return {"grid": write_atomic(out / "grid.png", grid),
            "losses": write_atomic(out / "losses.png", losses),
            "tradeoff": write_atomic(out / "tradeoff.png", tradeoff),
            "csv": csv_path, "json": json_path,
            "report": write_atomic(out / "report.html", page)}
