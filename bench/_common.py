"""What every benchmark prints first: the machine, the load on it and the date.

The development machine is shared, so every script measures what it compares side by side in
one run and prints the load average next to its numbers.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO.parent / "shared" / "images"
CONTENT = IMAGES / "content" / "tubingen.jpg"
STYLE = IMAGES / "style" / "great_wave.jpg"


def load_average() -> str:
    """``"1.23 1.10 0.98"`` (1, 5 and 15 minutes)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """One line: date, CPU, cores, torch and its threads, GPU if any, load average."""
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"{now}; {cpu_name()}, {os.cpu_count()} cores; torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads; {gpu}; load average {load_average()}")


def header(title: str) -> None:
    print(f"# {title}")
    print(f"# {machine()}")
    print(f"# command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    sys.stdout.flush()


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def git_head() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                              capture_output=True, check=False).stdout.strip()
    except OSError:
        return "?"
