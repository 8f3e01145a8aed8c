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
from nstkit.judge import Judge, Scores

FIELDS = ("variant", "recipe", "content", "style", "status", "output", "reused",
          "wall_time", "iterations", "judged_content", "judged_style", "error")


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
            "judged_content": None if score is None else round(score.content, 6),
            "judged_style": None if score is None else round(score.style, 6),
            "error": record.get("error") or entry.judge_error,
        }
        for term, value in (record.get("losses") or {}).items():
            row[f"loss:{term}"] = value
        rows.append(row)
    return rows


def _shown(path: Path, out: Path) -> str:
    try:
        return str(path.relative_to(out))
    except ValueError:
        return str(path)


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per variant, in order: jobs done and failed, mean wall time and judged distances."""
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
        for key in ("wall_time", "judged_content", "judged_style"):
            values = [r[key] for r in done if r[key] is not None]
            item[f"mean_{key}"] = round(mean(values), 6) if values else None
    return list(summary.values())


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
    """``results.csv`` and ``results.json`` (rows, per-variant summary, judge and recipes)."""
    data = {**details, "summary": summarise(rows), "rows": list(rows)}
    text = json.dumps(data, indent=2, ensure_ascii=False, default=os.fspath)
    return (write_atomic(out / "results.csv", rows_csv(rows)),
            write_atomic(out / "results.json", text + "\n"))
