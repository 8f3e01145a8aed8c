"""The per-job ETA of multiscale recipes: step-count ETA against nstkit's work-weighted one.

Records when each step of a real job finished (``--record FILE.json``), then replays any
recordings through both estimates with the recorded clock and prints, for each, the largest
error of the remaining time from the end of the second step on (over the steps with at least a
tenth of the job left) and the machine's load.

    python bench/eta.py --recipe fast --size 256 --record tests/data/steps-fast-256.json
    python bench/eta.py --replay tests/data/steps-*.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from nstkit.eta import JobClock, StepCosts


def record(recipe: str, size: int, out: Path) -> None:
    """Run ``recipe`` at ``size`` on a bundled pair and write its plan and step times."""
    import nstkit
    from nstkit.plugins import get_host
    from nstkit.recipe import load_recipe
    from nstkit.samples import samples_dir

    times: list[float] = []
    info: dict = {}

    class Steps:
        @nstkit.hookimpl
        def on_job_start(self, job) -> None:
            info.update(stages=[list(s) for s in job.stages], size=list(job.size))
            times.append(time.perf_counter())

        @nstkit.hookimpl
        def on_step(self, step) -> None:
            times.append(time.perf_counter())

    host = get_host()
    config = load_recipe(recipe, [f"size={size}"]).config
    with host.added(Steps(), name="bench.eta"):
        nstkit.stylize(samples_dir() / "content" / "chelsea.jpg",
                       samples_dir() / "style" / "starry_night.jpg", config, device="cpu",
                       host=host)
    data = {"recipe": recipe, **info, "load": os.getloadavg()[0],
            "seconds": [t - times[0] for t in times[1:]]}
    out.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}: {len(times) - 1} steps in {times[-1] - times[0]:.1f} s")


def worst_errors(data: dict) -> tuple[float, float]:
    """The largest relative error of the remaining time: (step count, work-weighted)."""
    seconds, total = data["seconds"], data["seconds"][-1]
    clock = JobClock([tuple(s) for s in data["stages"]], tuple(data["size"]), StepCosts(), 0.0)
    naive = weighted = 0.0
    for number, now in enumerate(seconds, start=1):
        clock.step(now)
        left = total - now
        if left < 0.1 * total:
            break
        if number == 1:  # the first step also sets the job up; nothing is measured yet
            continue
        naive = max(naive, abs(now / number * (len(seconds) - number) - left) / left)
        weighted = max(weighted, abs((clock.remaining() or 0.0) - left) / left)
    return naive, weighted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--record", type=Path)
    parser.add_argument("--replay", type=Path, nargs="*", default=[])
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    if args.record:
        record(args.recipe, args.size, args.record)
    for path in args.replay or ([args.record] if args.record else []):
        data = json.loads(path.read_text(encoding="utf-8"))
        naive, weighted = worst_errors(data)
        print(f"{path.name}: {data['recipe']} {data['size']} px, stages {data['stages']}, "
              f"{data['seconds'][-1]:.1f} s (recorded at load {data['load']:.1f}): worst ETA "
              f"error {naive:.0%} counting steps, {weighted:.0%} weighting them")


if __name__ == "__main__":
    main()
