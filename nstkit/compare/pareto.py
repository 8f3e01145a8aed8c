"""Ranking variants by Pareto dominance over several lower-is-better distances.

No weighting of one distance against another: variant A *dominates* B when A is no worse than
B on every metric and better on at least one. Rank 0 is the non-dominated front, rank 1 the
front once rank 0 is removed, and so on. Rows missing a metric (``None``: nothing judged) get
no rank and take no part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Row = Mapping[str, Any]


def complete(row: Row, metrics: Sequence[str]) -> bool:
    """Whether ``row`` has a value for every metric."""
    return all(row.get(metric) is not None for metric in metrics)


def dominates(a: Row, b: Row, metrics: Sequence[str]) -> bool:
    """``a`` is no worse than ``b`` on every metric (lower is better) and better on one."""
    if not (complete(a, metrics) and complete(b, metrics)):
        return False
    return (all(a[m] <= b[m] for m in metrics)
            and any(a[m] < b[m] for m in metrics))


def pareto_ranks(rows: Sequence[Row], metrics: Sequence[str]) -> list[int | None]:
    """The Pareto rank of each row: 0 for the non-dominated front, 1 for the front after
    removing rank 0, ...; ``None`` for a row missing a metric. Ties (equal on every metric)
    share a rank."""
    ranks: list[int | None] = [None] * len(rows)
    left = [i for i, row in enumerate(rows) if complete(row, metrics)]
    rank = 0
    while left:
        front = [i for i in left
                 if not any(dominates(rows[j], rows[i], metrics) for j in left if j != i)]
        for i in front:
            ranks[i] = rank
        left = [i for i in left if i not in front]
        rank += 1
    return ranks


def dominated(rows: Sequence[Row], metrics: Sequence[str]) -> list[list[int]]:
    """For each row, the indices of the rows it dominates."""
    return [[j for j, other in enumerate(rows) if dominates(row, other, metrics)]
            for row in rows]


def style_wins(a: Row, b: Row, content_metrics: Sequence[str],
               style_metrics: Sequence[str]) -> int | None:
    """On how many style metrics ``a`` is better than ``b``, provided ``a`` is no worse on
    every content metric; ``None`` when ``a`` is worse on content or a value is missing."""
    if not (complete(a, [*content_metrics, *style_metrics])
            and complete(b, [*content_metrics, *style_metrics])):
        return None
    if any(a[m] > b[m] for m in content_metrics):
        return None
    return sum(a[m] < b[m] for m in style_metrics)
