"""How long the light ``nstkit`` commands take, against ``python -c "import torch"``.

Runs every command and the torch import round-robin (so load changes hit them alike), takes the
median wall time of each and prints its ratio to the torch import, plus whether the command
imported torch at all (checked in a second run through ``nstkit.cli.main`` with an audit of
``sys.modules``). The target of issue 14: every command listed here at most 0.35x.

    python bench/cli_startup.py            # 5 rounds, installed plugins loaded
    python bench/cli_startup.py --rounds 9 --no-plugins
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, header

TARGET = 0.35
AUDIT = ("import sys; sys.argv = ['nstkit', *sys.argv[1:]]\n"
         "from nstkit.cli import main\n"
         "try:\n    main()\nexcept SystemExit:\n    pass\n"
         "print('TORCH' if 'torch' in sys.modules else 'no torch', file=sys.stderr)")


def commands(run_folder: Path) -> dict[str, list[str]]:
    return {
        "--help": ["--help"],
        "recipes": ["recipes"],
        "recipes show": ["recipes", "show", "gatys"],
        "recipes schema": ["recipes", "schema"],
        "validate": ["validate", str(REPO / "recipes" / "gatys.yaml"), "fast"],
        "layers": ["layers", "vgg19"],
        "plugins": ["plugins"],
        "status": ["status", str(run_folder)],
        "template": ["template", "slurm"],
    }


def status_folder() -> Path:
    """An output folder with a plan and no manifest, for ``nstkit status``."""
    folder = Path(tempfile.mkdtemp(prefix="nstkit-bench-"))
    samples = REPO / "nstkit" / "data" / "samples"
    subprocess.run([shutil.which("nstkit") or "nstkit", "run", "preview", "--content",
                    str(samples / "content"), "--style", str(samples / "style"), "--out",
                    str(folder), "--dry-run"], check=True, capture_output=True)
    return folder


def wall(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, capture_output=True, check=False)
    return time.perf_counter() - start


def imports_torch(args: list[str], env: dict[str, str]) -> bool:
    done = subprocess.run([sys.executable, "-c", AUDIT, *args], env=env, capture_output=True,
                          text=True, check=False)
    return done.stderr.strip().endswith("TORCH")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-plugins", action="store_true",
                        help="NSTKIT_DISABLE_PLUGIN_AUTOLOAD=1 (built-ins only)")
    args = parser.parse_args()
    header("nstkit CLI start-up against `python -c 'import torch'`")
    env = dict(os.environ)
    if args.no_plugins:
        env["NSTKIT_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    folder = status_folder()
    nstkit = shutil.which("nstkit") or "nstkit"
    runs = {"import torch": [sys.executable, "-c", "import torch"],
            **{name: [nstkit, *argv] for name, argv in commands(folder).items()}}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, argv in runs.items():
            times[name].append(wall(argv, env))
    torch_s = statistics.median(times["import torch"])
    print(f"\n{'command':<22} {'median s':>9} {'x torch':>8}  torch imported  "
          f"target <= {TARGET}")
    print(f"{'python -c import torch':<22} {torch_s:>9.3f} {1:>8.2f}")
    for name, argv in commands(folder).items():
        median = statistics.median(times[name])
        torch_in = "yes" if imports_torch(argv, env) else "no"
        verdict = "met" if median / torch_s <= TARGET and torch_in == "no" else "NOT MET"
        print(f"{'nstkit ' + name:<22} {median:>9.3f} {median / torch_s:>8.2f}  {torch_in:<14}  "
              f"{verdict}")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
