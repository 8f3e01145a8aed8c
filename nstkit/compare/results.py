"""The comparison's numbers: one row per variant and pair, written as CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from statistics import mean
from typing import Any

from nstkit.atomic import write_atomic
from nstkit.compare.collect import Entry
from nstkit.compare.pareto import dominated, pareto_ranks, style_wins
from nstkit.judge import CONTENT_METRICS, METRICS, STYLE_METRICS, Judge, Scores

JUDGED = tuple(f"judged_{metric}" for metric in METRICS)
"""A column per judged distance (:data:`nstkit.judge.METRICS`), all lower-is-better."""
MEANS = tuple(f"mean_{column}" for column in JUDGED)
"""The summary's per-variant means of :data:`JUDGED`; the Pareto ranks are over these."""
FIELDS = ("variant", "recipe", "content", "style", "status", "output", "reused",
          "wall_time", "iterations", *JUDGED, "error")


def judge_entries(entries: Sequence[Entry], judge: Judge,
                  progress: Callable[[Entry], None] = lambda entry: None) -> list[Scores | None]:
    """Judged distances of every finished entry; ``None`` for the others, and for an output
    that cannot be judged (its ``judge_error`` is set)."""
    scores: list[Scores | None] = []
    for entry in entries:
        score = None
        if entry.status == "done":
            try:
                score = judge(entry.output, entry.job.content, entry.job.style,
                              style_key=str(entry.job.style))
            except (OSError, ValueError, RuntimeError) as exc:
                entry.judge_error = f"{type(exc).__name__}: {exc}"
            progress(entry)
        scores.append(score)
    return scores


def make_rows(entries: Sequence[Entry], scores: Sequence[Scores | None],
              out: Path) -> list[dict[str, Any]]:
    """A flat row per entry; the recipe's own final loss terms as ``loss:<term>``."""
    rows = []
    for entry, score in zip(entries, scores, strict=True):
        record = entry.record or {}
        row: dict[str, Any] = {
            "variant": entry.variant.label, "recipe": entry.variant.recipe.name,
            "content": str(entry.job.content), "style": str(entry.job.style),
            "status": entry.status, "output": _shown(entry.output, out),
            "reused": entry.reused, "wall_time": record.get("wall_time"),
            "iterations": record.get("iterations"),
            **{f"judged_{metric}": None if score is None else round(value, 6)
               for metric, value in _values(score).items()},
            "error": record.get("error") or entry.judge_error,
        }
        for term, value in (record.get("losses") or {}).items():
            row[f"loss:{term}"] = value
        rows.append(row)
    return rows


def _values(score: Scores | None) -> dict[str, float | None]:
    return score.as_dict() if score is not None else dict.fromkeys(METRICS)


def _shown(path: Path, out: Path) -> str:
    try:
        return str(path.relative_to(out))
    except ValueError:
        return str(path)


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per variant, in order: jobs done and failed, mean wall time and judged distances, its
    Pareto rank over the mean judged distances (``pareto_rank``: 0 is the non-dominated
    front; ``None`` without judged outputs) and the variants it dominates (``dominates``)."""
    summary: dict[str, dict[str, Any]] = {}
    for row in rows:
        item = summary.setdefault(row["variant"], {"variant": row["variant"], "done": 0,
                                                   "failed": 0, "_rows": []})
        if row["status"] == "done":
            item["done"] += 1
            item["_rows"].append(row)
        elif row["status"] == "failed":
            item["failed"] += 1
    for item in summary.values():
        done = item.pop("_rows")
        for key in ("wall_time", *JUDGED):
            values = [r[key] for r in done if r.get(key) is not None]
            item[f"mean_{key}"] = round(mean(values), 6) if values else None
    items = list(summary.values())
    ranks, beaten = pareto_ranks(items, MEANS), dominated(items, MEANS)
    for item, rank, losers in zip(items, ranks, beaten, strict=True):
        item["pareto_rank"] = rank
        item["dominates"] = [items[j]["variant"] for j in losers]
    return items


def pairwise(summary: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each ordered pair of variants (A, B): on how many style distances (Gram, W2,
    sliced, palette; means) A is closer than B while no worse on both content distances;
    ``style_wins`` is ``None`` when A is worse on content (or either was not judged)."""
    content = [f"mean_judged_{m}" for m in CONTENT_METRICS]
    style = [f"mean_judged_{m}" for m in STYLE_METRICS]
    return [{"variant": a["variant"], "versus": b["variant"],
             "style_wins": style_wins(a, b, content, style), "style_metrics": len(style)}
            for a in summary for b in summary if a is not b]


def rows_csv(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as CSV: fixed columns first, then every loss term seen."""
    terms = sorted({key for row in rows for key in row if key.startswith("loss:")})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*FIELDS, *terms], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_results(out: Path, rows: Sequence[dict[str, Any]],
                  details: dict[str, Any]) -> tuple[Path, Path]:
    """``results.csv`` and ``results.json`` (rows, per-variant summary and pairwise wins,
    judge and recipes)."""
    summary = summarise(rows)
    data = {**details, "summary": summary, "pairwise": pairwise(summary), "rows": list(rows)}
    text = json.dumps(data, indent=2, ensure_ascii=False, default=os.fspath)
    return (write_atomic(out / "results.csv", rows_csv(rows)),
            write_atomic(out / "results.json", text + "\n"))
