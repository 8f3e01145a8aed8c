"""Scaling on the CPU: seconds per iteration and peak memory against image size.

Each size runs in a fresh process (so its peak RSS is its own): the default recipe (gatys,
L-BFGS) for a few iterations at longest side SIZE. Reported per size: seconds per iteration
(after the first), peak RSS (``VmHWM``, reset after the model is loaded, since decoding the
weights peaks higher than a small job), the RSS the job added on top of the loaded model, and
nstkit's memory estimate for the same job (``nstkit.memory``), with the ratio measured / estimated.

Run from the repository root: ``python bench/scaling.py [--sizes 128 256 512 1024]
[--iterations 3]``. The GPU version (``torch.cuda.max_memory_allocated``, images/min against
the batch size) is in ``bench/gpu.py``.
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
import json, sys, time
import nstkit
from nstkit.components import build_extractor
from nstkit.memory import estimate_for_recipe
from nstkit.plugins import PluginHost
from nstkit.recipe import load_recipe
size, iterations = int(sys.argv[1]), int(sys.argv[2])
def status(key):  # bytes of a /proc/self/status field (VmRSS now, VmHWM the peak)
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
config = load_recipe("gatys", [f"size={size}", f"optimizer.iterations={iterations}"]).config
import torch._dynamo  # what the first optimiser imports (~150 MiB): recipe validation used
                      # to, so it is part of the loaded model, not of the job
host = PluginHost(autoload=False)
build_extractor(host, "vgg19", __import__("torch").device("cpu"), pooling="max", weights=None)
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
h, w = result.image.shape[-2:]
estimate = estimate_for_recipe(config, h, w, host=host)
print(json.dumps({"size": [h, w], "per_iteration": (times[-1] - times[0]) / (len(times) - 1),
                  "peak_rss": status("VmHWM"), "model_rss": base,
                  "estimate": estimate.total, "estimate_no_weights":
                  estimate.total - estimate.weights}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512, 1024])
    parser.add_argument("--iterations", type=int, default=3)
    args = parser.parse_args()
    header("scaling with image size (CPU)")
    rows = []
    for size in args.sizes:
        out = subprocess.run([sys.executable, "-c", CHILD, str(size), str(args.iterations),
                              str(CONTENT), str(STYLE)], text=True, capture_output=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
        if out.returncode:
            print(f"{size} px failed: {out.stderr[-1500:]}")
            continue
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        added = row["peak_rss"] - row["model_rss"]
        h, w = row["size"]
        ratio = row["per_iteration"] / rows[0]["per_iteration"] if rows else 1
        print(f"{h}x{w} px: {row['per_iteration']:.2f} s/iteration ({ratio:.1f}x the first "
              f"size; pixels {h * w / (rows[0]['size'][0] * rows[0]['size'][1]):.0f}x); peak "
              f"RSS {row['peak_rss'] / 2**20:.0f} MiB, {added / 2**20:.0f} MiB above the "
              f"loaded model; estimate {row['estimate_no_weights'] / 2**20:.0f} MiB without "
              f"weights -> measured / estimate {added / row['estimate_no_weights']:.2f}  "
              f"[load {load_average()}]", flush=True)


if __name__ == "__main__":
    main()
