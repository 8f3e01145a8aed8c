"""How long a job has left: its steps weighted by what a step costs at each stage's size.

A multiscale job's quarter-size steps are many times cheaper than its full-size ones, but not
in proportion to their pixels: each step has a fixed cost too, which weighs more on small
images. Seconds per step are modelled as ``a + b * pixels``, fitted to the sizes measured so far
(two or more); from one measured size, other sizes are scaled by the prior
``(pixels + PRIOR_OVERHEAD) / (measured + PRIOR_OVERHEAD)``, the fixed cost of a step counted
as that many pixels.
A measured size answers for itself. The first step of a stage (it also computes the stage's
style targets) is left out of the stage's mean once later steps are measured. One
:class:`StepCosts` is shared by the jobs of a run, so from the second job of a size on the
estimate rests on measured steps only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

# a step's fixed cost, in pixels of per-pixel cost (a / b of ``a + b * pixels``), while only one
# size is measured: 2,000-3,000 for recipes fast (Adam, 256 px) and preview (L-BFGS, 384 px) on
# 2 CPU cores (tests/data/steps-*.json, bench/eta.py)
PRIOR_OVERHEAD = 2500
# measured sizes closer than this (relative) count as the same size
SAME_SIZE = 0.05


@dataclass
class _Size:
    """The steps measured at one size; a stage's first apart (it includes the stage's setup,
    so it is not used for estimates)."""

    first: float = 0.0
    total: float = 0.0
    count: int = 0

    def mean(self) -> float:
        return self.total / self.count


@dataclass
class StepCosts:
    """Measured seconds per optimisation step, by the image's pixel count."""

    measured: dict[int, _Size] = field(default_factory=dict)

    def observe(self, pixels: int, seconds: float, first: bool = False) -> None:
        """Add one step of ``pixels`` that took ``seconds`` (``first``: a stage's first)."""
        size = self.measured.setdefault(self._match(pixels) or pixels, _Size())
        if first and not size.count:
            size.first = seconds
        else:
            size.total, size.count = size.total + seconds, size.count + 1

    def per_step(self, pixels: int) -> float | None:
        """Expected seconds for one step of ``pixels``; ``None`` until a step other than a
        stage's first is measured."""
        means = {p: size.mean() for p, size in self.measured.items() if size.count}
        if not means:
            return None
        key = self._match(pixels)
        if key in means:
            return means[key]
        fitted = self._affine(means)
        if fitted is not None:
            return fitted[0] + fitted[1] * pixels
        nearest = min(means, key=lambda p: abs(math.log(p / pixels)))
        return means[nearest] * (pixels + PRIOR_OVERHEAD) / (nearest + PRIOR_OVERHEAD)

    @staticmethod
    def _affine(means: dict[int, float]) -> tuple[float, float] | None:
        """``(a, b)`` of ``seconds = a + b * pixels`` by least squares over the measured sizes,
        or ``None`` with fewer than two or a fit without a positive slope."""
        if len(means) < 2:
            return None
        xs = list(means)
        ys = [means[p] for p in xs]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) \
            / sum((x - mx) ** 2 for x in xs)
        if slope <= 0:
            return None
        return max(0.0, my - slope * mx), slope

    def _match(self, pixels: int) -> int | None:
        return next((p for p in self.measured if abs(p - pixels) <= SAME_SIZE * pixels), None)


def stage_pixels(size: tuple[int, int], scale: float) -> int:
    """The pixel count of a stage at ``scale`` of a ``(H, W)`` image (its longest side at
    least 16 px, as the stages are resized)."""
    height, width = size
    side = max(16, round(max(height, width) * scale))
    ratio = side / max(height, width)
    return max(1, round(height * ratio) * round(width * ratio))


class JobClock:
    """The remaining time of one job, updated step by step.

    Args:
        stages: the job's ``(scale, steps)`` plan.
        size: ``(H, W)`` of the full-size image.
        costs: step costs measured so far (shared with later jobs, which it updates).
        now: the time the job started, in seconds (any clock, the same for :meth:`step`).
    """

    def __init__(self, stages: Sequence[tuple[float, int]], size: tuple[int, int],
                 costs: StepCosts, now: float) -> None:
        self.plan = [(stage_pixels(size, scale), steps) for scale, steps in stages]
        self.costs, self.last, self.done = costs, now, 0

    def step(self, now: float) -> None:
        """The next step of the plan finished at ``now``."""
        pixels, first = self._stage_of(self.done)
        self.costs.observe(pixels, now - self.last, first)
        self.last, self.done = now, self.done + 1

    def _stage_of(self, step: int) -> tuple[int, bool]:
        """The pixel count of the plan's step number ``step`` (from 0), and whether it is
        the first of its stage."""
        for pixels, steps in self.plan:
            if step < steps:
                return pixels, step == 0
            step -= steps
        return self.plan[-1][0], False

    def remaining(self) -> float | None:
        """Seconds left, or ``None`` before any step anywhere was measured."""
        return self._work(self.done)

    def fraction(self) -> float:
        """The share of the job's expected time already spent, in ``[0, 1]`` (the share of
        steps while nothing is measured)."""
        total = self._work(0)
        steps = sum(steps for _, steps in self.plan)
        if total is None or total <= 0:
            return self.done / max(steps, 1)
        return min(1.0, 1 - (self._work(self.done) or 0.0) / total)

    def _work(self, start: int) -> float | None:
        """Expected seconds of the steps after the first ``start``."""
        seconds, skip = 0.0, start
        for pixels, steps in self.plan:
            left = max(0, steps - skip)
            skip = max(0, skip - steps)
            if left:
                cost = self.costs.per_step(pixels)
                if cost is None:
                    return None
                seconds += left * cost
        return seconds
