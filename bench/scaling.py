"""Scaling on the CPU: seconds per iteration and peak memory against image size, next to
nstkit's memory estimate.

Each size runs in a fresh process (so its peak RSS is its own): the default recipe (gatys,
L-BFGS) for a few iterations at longest side SIZE, content tubingen.jpg (512x384, resized
to SIZE), style great_wave.jpg (square).

What is measured, and what it is compared with: the process imports torch and nstkit and
builds the extractor with the recipe's own options (the job then finds it in nstkit's cache
and does not load the weights again); then it frees what loading the weights left in the
heap (``malloc_trim(0)``, glibc: otherwise the job silently reuses that garbage and looks
smaller), resets the peak (``/proc/self/clear_refs``) and reads the resident set ``base``.
*Measured* is the peak RSS of the job above it (``VmHWM - base``), so it counts everything the
job adds: activations, targets, optimiser, the one-off runtime cost the first job pays
(importing ``torch._dynamo`` when the first optimiser is made; the first forward and
backward's oneDNN and OpenMP state) and what glibc's heap keeps. The weights are in ``base``,
so the *estimate* it is compared with is :func:`nstkit.memory.estimate_for_recipe`'s
``total - weights`` (the peak less the weights; see :mod:`nstkit.memory`), for the same
recipe, iterations and result size.

Printed per size: s/iteration (after the first), the peak RSS, base, measured, estimate,
measured / estimate, the estimate's parts and the load average when the size finished.

Run from the repository root: ``python bench/scaling.py [--sizes 256 512 768 1024]
[--iterations 3] [--set precision=bf16 ...]``. Tiled: ``--set optimizer.name=adam --set
"tiling={tile: 256, overlap: 32}"``; the estimate is then the tiled plan's
(:func:`nstkit.memory_plan.plan_for_recipe`), which does not bound L-BFGS's history by the
iterations, hence Adam. The GPU version
(``torch.cuda.max_memory_allocated``, images/min against the batch size) is in ``bench/gpu.py``.
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
import ctypes, gc, json, sys, time
import torch
import nstkit
from nstkit.components import build_extractor
from nstkit.memory import estimate_for_recipe
from nstkit.plugins import PluginHost
from nstkit.recipe import load_recipe
size, iterations, extra = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[5])
def status(key):  # bytes of a /proc/self/status field (VmRSS now, VmHWM the peak)
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
config = load_recipe("gatys", [f"size={size}", f"optimizer.iterations={iterations}", *extra]
                     ).config
host = PluginHost(autoload=False)
build_extractor(host, config.extractor.name, torch.device("cpu"), **config.extractor.options)
loaded = status("VmRSS")
gc.collect()
ctypes.CDLL("libc.so.6").malloc_trim(0)  # give back what decoding the weights left
with open("/proc/self/clear_refs", "w") as f:  # reset the peak: loading the weights peaks
    f.write("5")                                 # higher than a small job does
base = status("VmRSS")
times = []
class Probe:
    @nstkit.hookimpl
    def on_step(self, step):
        times.append(time.perf_counter())
host.add(Probe())
result = nstkit.stylize(sys.argv[3], sys.argv[4], config, host=host, device="cpu")
peak = status("VmHWM")
h, w = result.image.shape[-2:]
if config.tiling is None:
    estimate = estimate_for_recipe(config, h, w, host=host)
else:  # the tiled stage's plan: one window's activations plus the image-sized state
    from nstkit.memory_plan import plan_for_recipe
    estimate = plan_for_recipe(config, h, w, 1, None, host).estimate
parts = {k: getattr(estimate, k) for k in ("weights", "activations", "backward", "targets",
                                           "optimizer", "runtime", "allocator")}
print(json.dumps({"size": [h, w], "per_iteration": (times[-1] - times[0]) / (len(times) - 1),
                  "peak_rss": peak, "loaded_rss": loaded, "base_rss": base,
                  "estimate": estimate.total, "parts": parts}))
"""

MIB = 2 ** 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 768, 1024])
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a recipe override, as nstkit run --set (repeatable)")
    args = parser.parse_args()
    header("scaling with image size (CPU); measured = peak RSS of the job above the loaded "
           f"model (heap trimmed), estimate = total - weights; gatys {' '.join(args.set)}")
    rows = []
    print("| size | s/iteration | peak RSS | base (model loaded) | measured | estimate | "
          "measured / estimate | estimate's parts (MiB) | load |")
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    for size in args.sizes:
        out = subprocess.run([sys.executable, "-c", CHILD, str(size), str(args.iterations),
                              str(CONTENT), str(STYLE), json.dumps(args.set)], text=True,
                             capture_output=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
        if out.returncode:
            print(f"{size} px failed: {out.stderr[-1500:]}")
            continue
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        h, w = row["size"]
        measured = row["peak_rss"] - row["base_rss"]
        estimate = row["estimate"] - row["parts"]["weights"]
        parts = ", ".join(f"{name} {value / MIB:.0f}" for name, value in row["parts"].items())
        print(f"| {h}x{w} | {row['per_iteration']:.2f} | {row['peak_rss'] / MIB:.0f} MiB | "
              f"{row['base_rss'] / MIB:.0f} MiB | {measured / MIB:.0f} MiB | "
              f"{estimate / MIB:.0f} MiB | **{measured / estimate:.2f}** | {parts} | "
              f"{load_average()} |", flush=True)


if __name__ == "__main__":
    main()
