"""The per-job ETA (``nstkit.eta``): steps weighted by their measured cost, with a fake clock."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
import torch
from rich.console import Console

from nstkit.eta import PRIOR_OVERHEAD, JobClock, StepCosts, stage_pixels
from nstkit.image import resize_longest
from nstkit.job import JobInfo

# recipe fast's plan and its seconds per step at each stage, 256 px on 2 quiet CPU cores
FAST = ((0.25, 100), (0.5, 50), (1.0, 80))
SIZE = (170, 256)


def fake_run(stages, size, per_step, setup: float = 0.0) -> list[float]:
    """When each step of a job ends, steps costing ``per_step(pixels)`` seconds and the first
    of each stage ``setup`` more (its style targets)."""
    now, times = 0.0, []
    for scale, steps in stages:
        pixels = stage_pixels(size, scale)
        for step in range(steps):
            now += per_step(pixels) + (setup if step == 0 else 0.0)
            times.append(now)
    return times


def worst_error(stages, size, times, costs: StepCosts | None = None, start: int = 1) -> float:
    """The largest relative error of the remaining time, from step number ``start`` (from 0;
    the first also sets the job up) until a tenth of the job is left."""
    clock = JobClock(stages, size, costs or StepCosts(), 0.0)
    worst = 0.0
    for number, now in enumerate(times):
        clock.step(now)
        if number == 0:
            assert clock.remaining() is None or costs is not None
        if number < start:
            continue
        left = times[-1] - now
        if left < 0.1 * times[-1]:
            break
        worst = max(worst, abs(clock.remaining() - left) / left)
    return worst


def affine(pixels: int) -> float:
    """Seconds per step of fast at 256 px measured quiet: 0.085, 0.22, 0.71 at its stages."""
    return 0.044 + 1.53e-5 * pixels


@pytest.mark.parametrize(("size", "scale"), [((170, 256), 0.25), ((512, 341), 0.5),
                                             ((40, 60), 0.25), ((1000, 999), 1.0)])
def test_stage_pixels_are_the_resized_stage_image(size, scale) -> None:
    image = torch.zeros(1, 3, *size)
    stage = resize_longest(image, max(16, round(max(size) * scale)))
    assert stage_pixels(size, scale) == stage.shape[-1] * stage.shape[-2]


def test_a_measured_size_answers_for_itself_and_the_first_step_is_set_apart() -> None:
    costs = StepCosts()
    assert costs.per_step(100) is None
    costs.observe(100, 5.0, first=True)
    assert costs.per_step(100) is None  # a stage's first step also sets the stage up
    costs.observe(100, 1.0)
    costs.observe(102, 2.0)  # within 5 %: the same size
    assert costs.per_step(101) == pytest.approx(1.5)


def test_one_size_scales_by_the_prior_and_two_fit_a_line() -> None:
    costs = StepCosts()
    costs.observe(1000, 2.0)
    assert costs.per_step(4000) == pytest.approx(2.0 * (4000 + PRIOR_OVERHEAD)
                                                 / (1000 + PRIOR_OVERHEAD))
    costs.observe(4000, 5.0)  # a = 1, b = 1e-3
    assert costs.per_step(16000) == pytest.approx(1 + 16)
    assert costs.per_step(500) == pytest.approx(1.5)


def test_a_line_without_a_positive_slope_falls_back_to_the_prior() -> None:
    costs = StepCosts()
    costs.observe(1000, 2.0)
    costs.observe(4000, 1.0)  # noise: the bigger size measured faster
    assert costs.per_step(16000) == pytest.approx(1.0 * (16000 + PRIOR_OVERHEAD)
                                                  / (4000 + PRIOR_OVERHEAD))


def test_fast_recipe_eta_is_within_20_percent_from_the_first_stage_on() -> None:
    times = fake_run(FAST, SIZE, affine, setup=0.3)
    assert worst_error(FAST, SIZE, times) < 0.2
    at_50 = times[49] / 50 * (len(times) - 50)  # counting steps, halfway through stage 1
    assert at_50 < 0.3 * (times[-1] - times[49])


RECORDED = sorted((Path(__file__).parent / "data").glob("steps-*.json"))


@pytest.mark.parametrize("path", RECORDED, ids=[path.stem for path in RECORDED])
def test_eta_is_within_20_percent_of_a_recorded_run(path: Path) -> None:
    """Real jobs on a quiet machine (``python bench/eta.py --record``): when each step ended.
    From the third step on: the second is the only one measured then, and it still warms up
    (recipe preview's took 1.5x a later one, so the ETA after it was 30 % long)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    stages, size = [tuple(stage) for stage in data["stages"]], tuple(data["size"])
    times = data["seconds"]
    assert len(times) == sum(steps for _, steps in stages)
    assert worst_error(stages, size, times, start=2) < 0.2
    counted = [abs(now / n * (len(times) - n) - (times[-1] - now)) / (times[-1] - now)
               for n, now in enumerate(times[:-len(times) // 2], start=1)]
    assert max(counted) > 0.3  # counting steps is far off on the same run


def test_the_second_job_of_a_run_is_estimated_from_measured_stages() -> None:
    costs = StepCosts()
    first = fake_run(FAST, SIZE, lambda p: 0.01 + (p / 1e4) ** 1.3)  # far from the prior
    worst_error(FAST, SIZE, first, costs)
    assert worst_error(FAST, SIZE, first, costs) < 0.02


def test_fraction_weights_the_bar_by_expected_time() -> None:
    clock = JobClock(FAST, SIZE, StepCosts(), 0.0)
    times = fake_run(FAST, SIZE, affine)
    assert clock.fraction() == 0.0
    for now in times[:100]:  # the quarter-size stage: 43 % of the steps
        clock.step(now)
    assert clock.fraction() == pytest.approx(times[99] / times[-1], rel=0.2)
    assert clock.fraction() < 0.2


def test_the_run_display_shows_the_weighted_eta() -> None:
    from nstkit.runner.display import BatchDisplay

    display = BatchDisplay(Console(file=StringIO(), force_terminal=True), live=True)
    display.start(1, 0)
    job = JobInfo("a.png", 230, "cpu", SIZE, {}, FAST)
    display.job_started(job)
    times = fake_run(FAST, SIZE, affine)
    for step in range(1, 11):
        display.job_step_at(job, step, {"total": 1.0}, times[step - 1])
    task = display.progress.tasks[-1]
    left = times[-1] - times[9]
    shown = task.fields["eta"].removeprefix("eta ").split(":")
    assert abs(int(shown[0]) * 60 + int(shown[1]) - left) < 0.2 * left
    assert task.fields["count"] == "10/230"
    assert task.percentage < 5
    display.close()
