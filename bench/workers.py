"""Cooperative workers (issue 21): the same 9 jobs run by one ``nstkit run`` process, then by
three started at once on one output folder, side by side in one run.

Run from the repository root: ``python bench/workers.py [--size 96] [--iterations 20]
[--workers 3] [--repeats 1]``. Jobs: 3 photos x 3 paintings of ../shared/images, recipe
gatys (original VGG19) at ``--size`` px for ``--iterations`` L-BFGS steps. Each process
gets one torch thread (``OMP_NUM_THREADS=1``), so one worker is one core, as one worker is one
GPU on a real cluster, and its own session (``setsid``), as on its own machine: Linux's
autogroup scheduler shares the CPU between sessions, so workers started in one session would
share that session's share of a busy machine, however many they are.

Printed per run: its wall time, the jobs each worker did (its ``done`` lines), whether the
manifest holds exactly 9 ``done`` records for 9 outputs, the mean time inside a job (the
records' ``wall_time``), the cores the workers got (their CPU seconds over the wall time)
and the load average after it; then the ratio of the wall times. Ideal for N
workers is 1/N of one worker's time, plus the start-up (import, extractor) that every worker
pays once, while the machine has N free cores: with fewer, or with other work on them, the
ratio shows the cores the workers got, not the claims' overhead.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import IMAGES, header, load_average

from nstkit.runner.manifest import read_records

CONTENTS = ["chelsea.jpg", "coffee.jpg", "tubingen.jpg"]
STYLES = ["composition_vii.jpg", "great_wave.jpg", "the_scream.jpg"]


def inputs(folder: Path) -> tuple[Path, Path]:
    """A content and a style folder of links to the 3 + 3 images."""
    content, style = folder / "content", folder / "style"
    for target, names, source in ((content, CONTENTS, "content"), (style, STYLES, "style")):
        target.mkdir()
        for name in names:
            (target / name).symlink_to(IMAGES / source / name)
    return content, style


def run(workers: int, content: Path, style: Path, out: Path, options: list[str]) -> float:
    """Start ``workers`` processes at once on ``out``; print what they did; the wall time."""
    command = [sys.executable, "-m", "nstkit", "run", "gatys", "--content", str(content),
               "--style", str(style), "--out", str(out), "--quiet", *options]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NSTKIT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    start, cpu = time.perf_counter(), _children_cpu()
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True, start_new_session=True)
                 for _ in range(workers)]
    logs = [process.communicate()[1] for process in processes]
    seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu
    codes = [process.returncode for process in processes]
    did = [sum(": done in " in line for line in log.splitlines()) for log in logs]
    records = list(read_records(out))
    once = (len(records) == 9 and len({r["output"] for r in records}) == 9
            and all(r["status"] == "done" for r in records))
    inside = sum(r["wall_time"] for r in records) / max(1, len(records))
    print(f"{workers} worker{'s' * (workers > 1)}: {seconds:6.1f} s; jobs per worker {did}; "
          f"exit codes {codes}; 9 done records, each job once: {once}; {inside:.1f} s inside "
          f"a job; {cpu / seconds:.2f} cores used; load average {load_average()}", flush=True)
    return seconds


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    header("cooperative workers: 9 jobs, 1 process against several on one folder")
    options = ["--size", str(args.size), "--iterations", str(args.iterations),
               "--device", "cpu"]
    with tempfile.TemporaryDirectory() as tmp:
        content, style = inputs(Path(tmp))
        for repeat in range(args.repeats):
            one = run(1, content, style, Path(tmp) / f"one-{repeat}", options)
            many = run(args.workers, content, style, Path(tmp) / f"many-{repeat}", options)
            print(f"ratio {args.workers} workers / 1 worker: {many / one:.2f} "
                  f"(ideal {1 / args.workers:.2f} with {args.workers} free cores; "
                  f"{os.cpu_count()} cores here)", flush=True)


if __name__ == "__main__":
    main()
