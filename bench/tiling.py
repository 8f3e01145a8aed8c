"""Tiled stylisation on the CPU: memory, time per step, global against local style, a plan.

Four measurements, each side by side in one run (every job in a fresh process, so its peak
RSS is its own; the peak is reset after the model is loaded, as in ``bench/scaling.py``):

1. peak RSS of a 2048 px tiled run (tile 256) against an untiled 256 px run (aim: <= 1.5x);
2. seconds per step against size, whole and tiled (tile 512);
3. ``style: global`` against ``style: local`` at 512 px in 256 px tiles: the whole-image
   objective (the recipe's loss computed untiled) reached per second;
4. the memory plan of an 8000 px job on this machine, whole and ``tiling: auto``.

Every job is the gatys recipe with Adam (L-BFGS's history is image-sized; the plan prices it).
Run from the repository root: ``python bench/tiling.py [--steps 3] [--skip rss,time,...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CONTENT, REPO, STYLE, header, load_average

CHILD = """
import json, sys, time, torch
import nstkit
from nstkit.components import build_extractor
from nstkit.plugins import PluginHost
from nstkit.recipe import load_recipe
size, steps, tiling = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
config = load_recipe("gatys", [f"size={size}", "optimizer.name=adam",
                               f"optimizer.iterations={steps}"]).config
config = config.model_copy(update={"tiling": config.model_validate(
    {"tiling": tiling}).tiling})
import torch._dynamo
host = PluginHost(autoload=False)
build_extractor(host, "vgg19", torch.device("cpu"), pooling="max", weights=None)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
times = []
class Probe:
    @nstkit.hookimpl
    def on_step(self, step):
        times.append(time.perf_counter())
host.add(Probe())
start = time.perf_counter()
result = nstkit.stylize(sys.argv[4], sys.argv[5], config, host=host, device="cpu")
from nstkit.memory_plan import plan_for_recipe
h, w = result.image.shape[-2:]
plan = plan_for_recipe(config, h, w, 1, None, host)
print(json.dumps({"size": [h, w], "peak_rss": status("VmHWM"), "estimate": plan.estimate.total,
                  "first_step": times[0] - start,
                  "per_step": (times[-1] - times[0]) / max(1, len(times) - 1)}))
"""


def child(size: int, steps: int, tiling: dict | None) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(size), str(steps),
                          json.dumps(tiling), str(CONTENT), str(STYLE)], text=True,
                         capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                         check=False)
    if out.returncode:
        raise SystemExit(f"{size} px {tiling} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def mib(count: float) -> str:
    return f"{count / 2 ** 20:.0f} MiB"


def rss(steps: int) -> None:
    print("\n## Peak RSS: 2048 px in 256 px tiles against 256 px whole (Adam)")
    whole = child(256, steps, None)
    tiled = child(2048, steps, {"tile": 256, "overlap": 32})
    print("| run | size | peak RSS | estimate | measured / estimate |\n|---|---|---|---|---|")
    for name, row in (("256 px whole", whole), ("2048 px, tile 256, overlap 32", tiled)):
        print(f"| {name} | {row['size'][0]}x{row['size'][1]} | {mib(row['peak_rss'])} | "
              f"{mib(row['estimate'])} | {row['peak_rss'] / row['estimate']:.2f} |")
    print(f"ratio tiled / whole peak RSS: {tiled['peak_rss'] / whole['peak_rss']:.2f} "
          f"(aim <= 1.5); load {load_average()}")


def timing(steps: int, sizes: list[int]) -> None:
    print("\n## Seconds per step against size (Adam), whole and in 512 px tiles (overlap 64)")
    print("| size | whole s/step | tiled s/step | tiled / whole |\n|---|---|---|---|")
    for size in sizes:
        whole = child(size, steps, None) if size <= 1024 else None
        tiled = child(size, steps, {"tile": 512, "overlap": 64}) if size > 512 else None
        w = f"{whole['per_step']:.1f}" if whole else "-"
        t = f"{tiled['per_step']:.1f}" if tiled else "(one tile: whole)"
        ratio = f"{tiled['per_step'] / whole['per_step']:.2f}" if whole and tiled else "-"
        print(f"| {size} | {w} | {t} | {ratio} |")
    print(f"load {load_average()}")


def _run_capturing(config, host, every: int) -> list:
    """Stylise, keeping the image after step 1 and every ``every`` steps."""
    import nstkit

    images = []

    class Probe:
        @nstkit.hookimpl
        def on_step(self, step, image):
            if step == 1 or step % every == 0:
                images.append((step, image.detach().clone()))

    with host.added(Probe(), name="bench-probe"):
        nstkit.stylize(CONTENT, STYLE, config, host=host, device="cpu")
    return images


def _seconds_per_step(configs: dict, host, rounds: int = 3, steps: int = 3) -> dict:
    """Median s/step of each config, timed in interleaved short runs (the load drifts)."""
    import statistics
    import time

    import nstkit

    class Probe:
        def __init__(self) -> None:
            self.stamps: list[float] = []

        @nstkit.hookimpl
        def on_step(self, step):
            self.stamps.append(time.perf_counter())

    samples: dict = {name: [] for name in configs}
    for _ in range(rounds):
        for name, config in configs.items():
            probe = Probe()
            short = config.model_copy(update={"optimizer": config.optimizer.model_copy(
                update={"iterations": steps})})
            with host.added(probe, name="bench-timer"):
                nstkit.stylize(CONTENT, STYLE, short, host=host, device="cpu")
            samples[name].append((probe.stamps[-1] - probe.stamps[0]) / (steps - 1))
    return {name: statistics.median(values) for name, values in samples.items()}


def strategies(steps: int, size: int = 512, every: int = 5) -> None:
    """The whole-image objective (untiled) of each strategy's images against time."""
    import torch

    from nstkit.components import build_extractor, build_terms
    from nstkit.image import load_image, resize_longest
    from nstkit.optimisation import WholeImage, compute_targets, feature_layers
    from nstkit.plugins import PluginHost
    from nstkit.recipe import load_recipe

    print(f"\n## style: global against local ({size} px, 256 px tiles, overlap 32, Adam)")
    host = PluginHost(autoload=False)
    base = load_recipe("gatys", [f"size={size}", "optimizer.name=adam",
                                 f"optimizer.iterations={steps}"]).config
    configs = {name: base.model_copy(update={"tiling": base.model_validate(
        {"tiling": tiling}).tiling})
        for name, tiling in (("whole", None), ("global", {"tile": 256, "overlap": 32}),
                             ("local", {"tile": 256, "overlap": 32, "style": "local"}))}
    runs = {name: _run_capturing(config, host, every) for name, config in configs.items()}
    per_step = _seconds_per_step(configs, host)
    extractor = build_extractor(host, "vgg19", torch.device("cpu"), pooling="max",
                                weights="original")
    terms = build_terms(host, base.losses)
    layers = feature_layers(terms, extractor)
    content = resize_longest(load_image(CONTENT), size)
    style = resize_longest(load_image(STYLE), size)
    targets = compute_targets(extractor, layers, content, [style], [1.0])
    for term in terms:
        term.module.prepare(targets)
    objective = WholeImage(terms, extractor, layers)
    marks = [step for step, _ in runs["whole"]]
    print("| strategy | s/step (interleaved median) | " + " | ".join(
        f"objective @ {step}" for step in marks) + " |")
    print("|---" * (2 + len(marks)) + "|")
    curves = {}
    for name, images in runs.items():
        curves[name] = [(step, float(objective(image, False)[-1])) for step, image in images]
        print(f"| {name} | {per_step[name]:.2f} | " +
              " | ".join(f"{v:.4g}" for _, v in curves[name]) + " |")
    budget = steps * per_step["global"]
    for name, curve in curves.items():
        reachable = [v for step, v in curve if step * per_step[name] <= budget]
        best = f"{min(reachable):.4g}" if reachable else "(not one step)"
        print(f"- {name}: best objective within {budget:.0f} s ({steps} global steps): {best}")
    print(f"load {load_average()}")


def plan() -> None:
    from nstkit.memory import available_memory
    from nstkit.memory_plan import plan_for_recipe
    from nstkit.recipe import load_recipe

    print("\n## An 8000 px gatys job on this machine")
    free = available_memory("cpu")
    for sets in ([], ["tiling=auto"], ["tiling=auto", "optimizer.name=adam"]):
        config = load_recipe("gatys", ["size=8000", *sets]).config
        result = plan_for_recipe(config, 6000, 8000, 1, free)
        print(f"- `{' '.join(sets) or 'as is'}`: {'fits' if result.fits else 'does NOT fit'}: "
              f"{result.describe()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--quality-steps", type=int, default=30)
    parser.add_argument("--quality-size", type=int, default=384)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--skip", default="", help="comma-separated: rss,time,quality,plan")
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    header("tiled stylisation (CPU)")
    if "plan" not in skip:
        plan()
    if "rss" not in skip:
        rss(args.steps)
    if "quality" not in skip:
        strategies(args.quality_steps, args.quality_size)
    if "time" not in skip:
        timing(args.steps, args.sizes)


if __name__ == "__main__":
    main()
