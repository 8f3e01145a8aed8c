"""What the Ray engine costs over the local one: local-cluster start-up, and per-job overhead
on the same tiny jobs, both engines in one run.

Run from the repository root with the ray extra installed: ``python bench/ray_overhead.py``
(uses ../shared/images: 4 photos x 4 paintings at 32 px, 2 L-BFGS steps, so each job is short
and any per-job overhead shows). Each engine runs 4 jobs and then 16; the difference divided by
12 is its time per job, free of fixed costs (start-up, the extractor loaded once); the fixed
cost is what remains. The Ray engine runs with one actor (like the local engine, one job at a
time) on a cluster started once for the benchmark, as a long batch on a real cluster would.
Both use one torch thread: Ray gives an actor of ``num_cpus=1`` ``OMP_NUM_THREADS=1``, and the
local engine at its default thread count measured several times slower per job on this busy
2-core machine (threads contending with other processes), which is not what is measured here.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path

import ray
import torch

from nstkit.executors import RunRequest
from nstkit.executors.local import LocalExecutor
from nstkit.executors.ray import RayExecutor
from nstkit.plugins import PluginHost
from nstkit.recipe import load_recipe
from nstkit.runner.execute import RunOptions
from nstkit.runner.manifest import latest_records
from nstkit.runner.plan import find_images, plan_jobs

IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "images"
SETS = ["size=32", "optimizer.iterations=2"]


def in_job(out: Path) -> float:
    """Mean time inside the jobs (the manifest's ``wall_time``: stylise and save)."""
    times = [record["wall_time"] for record in latest_records(out).values()]
    return sum(times) / len(times)


def timed(engine: object, jobs: list, out: Path) -> float:
    recipe = load_recipe("gatys", SETS)
    out.mkdir(parents=True)
    request = RunRequest(recipe, jobs, RunOptions(out, device="cpu"), PluginHost(autoload=False))
    start = time.perf_counter()
    summary = engine.run(request)
    seconds = time.perf_counter() - start
    assert summary.count("done") == len(jobs), [o.error for o in summary.outcomes]
    return seconds


def main() -> None:
    torch.set_num_threads(1)
    recipe = load_recipe("gatys", SETS)
    jobs = plan_jobs(find_images(IMAGES / "content"), find_images(IMAGES / "style"),
                     recipe.name, "png")
    small, large = jobs[:4], jobs
    start = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False,
             logging_level=logging.WARNING)
    cluster = time.perf_counter() - start
    results: dict[str, tuple[float, float]] = {}
    inside: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, engine in [("local", LocalExecutor()), ("ray", RayExecutor(actors=1))]:
            few = timed(engine, small, Path(tmp) / f"{name}-few")
            many = timed(engine, large, Path(tmp) / f"{name}-many")
            per_job = (many - few) / (len(large) - len(small))
            results[name] = (per_job, few - per_job * len(small))
            inside[name] = in_job(Path(tmp) / f"{name}-many")
            print(f"{name:5s}: {len(small)} jobs {few:6.2f} s, {len(large)} jobs {many:6.2f} s "
                  f"-> {per_job:.3f} s per job ({inside[name]:.3f} s of it inside the job), "
                  f"{results[name][1]:.2f} s fixed", flush=True)
    start = time.perf_counter()
    ray.shutdown()
    down = time.perf_counter() - start
    (local_job, local_fixed), (ray_job, ray_fixed) = results["local"], results["ray"]
    print(f"local Ray cluster: start {cluster:.2f} s, shutdown {down:.2f} s")
    print(f"per job: ray {ray_job:.3f} s vs local {local_job:.3f} s: overhead "
          f"{ray_job - local_job:+.3f} s per job, ratio {ray_job / local_job:.2f}; outside "
          f"the job itself: ray {ray_job - inside['ray']:+.3f} s, local "
          f"{local_job - inside['local']:+.3f} s")
    print(f"fixed per run (actor start + extractor load vs extractor load): ray "
          f"{ray_fixed:.2f} s vs local {local_fixed:.2f} s, ratio {ray_fixed / local_fixed:.1f}")


if __name__ == "__main__":
    sys.exit(main())
