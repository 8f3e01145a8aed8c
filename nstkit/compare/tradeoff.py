"""``tradeoff.png``: judged content distance against judged style distance, one point per job.

A colour per variant; each variant's mean as a large marker; the Pareto front of the means
(no other variant closer on both axes) as a dashed line. The variants of one recipe under
``--sweep`` are joined in sweep order, per pair and through their means, so the curve a knob
traces is visible.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from nstkit.compare.pareto import pareto_ranks

X, Y = "judged_content", "judged_style"  # lower is better on both


def points(rows: Sequence[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """Per variant (in the rows' order) the ``(content, style)`` of each judged job."""
    found: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        found.setdefault(row["variant"], [])
        if row.get(X) is not None and row.get(Y) is not None:
            found[row["variant"]].append((row[X], row[Y]))
    return found


def means(found: dict[str, list[tuple[float, float]]]) -> dict[str, tuple[float, float]]:
    """The mean point of each variant with at least one judged job."""
    return {label: (sum(x for x, _ in pts) / len(pts), sum(y for _, y in pts) / len(pts))
            for label, pts in found.items() if pts}


def front(centres: dict[str, tuple[float, float]]) -> list[tuple[float, float]]:
    """The non-dominated means, by increasing content distance."""
    labels = list(centres)
    rows = [{X: centres[label][0], Y: centres[label][1]} for label in labels]
    ranks = pareto_ranks(rows, (X, Y))
    return sorted(centres[label] for label, rank in zip(labels, ranks, strict=True) if rank == 0)


def tradeoff_figure(rows: Sequence[dict[str, Any]],
                    sweeps: Sequence[Sequence[str]] = ()) -> Any:
    """The matplotlib ``Figure``; ``sweeps`` lists the labels of each swept recipe in sweep
    order (rows are ``make_rows`` rows: ``variant``, ``content``, ``style`` and the judged
    distances)."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(7, 5.5), layout="constrained")
    axis = fig.subplots()
    found = points(rows)
    centres = means(found)
    colours = {label: f"C{i % 10}" for i, label in enumerate(found)}
    for label, pts in found.items():
        if pts:
            axis.scatter(*zip(*pts, strict=True), s=18, alpha=0.55, color=colours[label],
                         label=label, gid=f"jobs:{label}")
    for labels in sweeps:
        _join(axis, rows, [label for label in labels if label in centres], centres)
    for label, (x, y) in centres.items():
        axis.scatter([x], [y], s=110, marker="D", color=colours[label], edgecolor="black",
                     zorder=3, gid=f"mean:{label}")
    best = front(centres)
    if best:
        axis.plot(*zip(*best, strict=True), ls="--", color="black", lw=1, zorder=2,
                  label="Pareto front (means)", gid="front")
    axis.set_xlabel("judged content distance (relu4_2, relative; lower: closer to the photo)")
    axis.set_ylabel("judged style distance (Gram, relative; lower: closer to the painting)")
    axis.grid(alpha=0.3)
    if found:
        axis.legend(fontsize=8)
    fig.suptitle("content against style: a point per job, a diamond per variant's mean",
                 fontsize=10)
    return fig


def _join(axis: Any, rows: Sequence[dict[str, Any]], labels: Sequence[str],
          centres: dict[str, tuple[float, float]]) -> None:
    """Lines through one swept recipe's variants in sweep order: per pair, and the means."""
    if len(labels) < 2:
        return
    by_pair: dict[tuple[str, str], dict[str, tuple[float, float]]] = {}
    for row in rows:
        if row["variant"] in labels and row.get(X) is not None and row.get(Y) is not None:
            by_pair.setdefault((row["content"], row["style"]), {})[row["variant"]] = (
                row[X], row[Y])
    for pair in by_pair.values():
        line = [pair[label] for label in labels if label in pair]
        if len(line) > 1:
            axis.plot(*zip(*line, strict=True), color="grey", lw=0.6, alpha=0.5, zorder=1)
    axis.plot(*zip(*(centres[label] for label in labels), strict=True), color="black", lw=1.5,
              zorder=2, gid=f"sweep:{labels[0]}")


def tradeoff_png(rows: Sequence[dict[str, Any]], sweeps: Sequence[Sequence[str]] = ()) -> bytes:
    """:func:`tradeoff_figure` as PNG bytes."""
    buffer = io.BytesIO()
    tradeoff_figure(rows, sweeps).savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
