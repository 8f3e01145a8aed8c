"""Several ``nstkit run`` processes on one output folder, one of them killed with -9 in the
middle of a job: the others finish everything and redo the killed job once.

Test plugins make the victim stop inside its first job until it is killed and log the jobs
the others start; the test synchronises on files the processes write, never on sleeps.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from nstkit.runner.leases import CLAIMS, read_claim
from nstkit.runner.manifest import file_sha256, read_records

TIMEOUT = 180
QUICK = ["--size", "32", "--iterations", "2", "--quiet", "--set", "extractor.name=vgg16",
         "--set", "extractor.weights=random"]

# appends the name of every job this process starts to $NSTKIT_TEST_LOG
LOG_STARTS = """
import os
import nstkit
class Plugin:
    @nstkit.hookimpl
    def on_job_start(self, job):
        with open(os.environ["NSTKIT_TEST_LOG"], "a") as handle:
            handle.write(job.name + "\\n")
"""

# after the first step of its first job, writes $NSTKIT_TEST_MARKER and waits to be killed
PAUSE = """
import os, time
import nstkit
class Plugin:
    @nstkit.hookimpl
    def on_step(self, step):
        if step == 1:
            with open(os.environ["NSTKIT_TEST_MARKER"], "w") as handle:
                handle.write(str(os.getpid()))
            time.sleep(3600)
"""


def _nstkit(args: list[str], plugin: str, **env: str) -> subprocess.Popen:
    """``nstkit ARGS`` in a new process with the test plugin ``plugin`` (code defining
    ``Plugin``)."""
    main = (f"{plugin}\nfrom nstkit.plugins import get_host\n"
            f"get_host().add(Plugin(), name='test')\nfrom nstkit.cli import main; main()")
    return subprocess.Popen([sys.executable, "-c", main, *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "NSTKIT_DISABLE_PLUGIN_AUTOLOAD": "1",
                                 "OMP_NUM_THREADS": "1", **env})


def _until(condition, what: str, processes: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        for process in processes:
            if process.poll() is not None:
                pytest.fail(f"a worker ended (code {process.returncode}) before {what}:\n"
                            f"{process.communicate()[1]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {TIMEOUT} s")
        time.sleep(0.05)


@pytest.mark.slow
def test_kill_9_of_one_worker_the_others_finish_and_redo_its_job_once(
        tiny: Path, tmp_path: Path) -> None:
    content, style = tmp_path / "content", tmp_path / "style"
    for folder, source in ((content, tiny / "content"), (style, tiny / "style")):
        folder.mkdir()
        for index, name in enumerate(sorted(os.listdir(source)) * 2):
            if index < 3:
                (folder / f"{index}-{name}").write_bytes((source / name).read_bytes())
    out, log, marker = tmp_path / "out", tmp_path / "starts.log", tmp_path / "paused"
    args = ["run", "gatys", "--content", str(content), "--style", str(style), "--out", str(out),
            *QUICK]
    victim = _nstkit(args, PAUSE, NSTKIT_TEST_MARKER=str(marker))
    others: list[subprocess.Popen] = []
    try:
        _until(marker.exists, "the victim's first job", [victim])
        [claim] = [read_claim(path) for path in (out / CLAIMS).iterdir()]
        assert claim.pid == victim.pid
        others = [_nstkit(args, LOG_STARTS, NSTKIT_TEST_LOG=str(log)) for _ in range(2)]
        _until(lambda: len(list(read_records(out))) == 8, "8 jobs done by the others",
               [victim, *others])  # all but the victim's job; they wait for its claim
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=TIMEOUT)  # reaped: its pid is gone, not a zombie
        results = [(process.wait(timeout=TIMEOUT), process.communicate())
                   for process in others]
    finally:
        for process in (victim, *others):
            if process.poll() is None:
                process.kill()
                process.wait()
    assert [code for code, _ in results] == [0, 0], results
    records = list(read_records(out))
    assert len(records) == 9
    assert {record["status"] for record in records} == {"done"}
    assert len({record["output"] for record in records}) == 9
    assert records[-1]["output"] == claim.output
    starts = Counter(log.read_text().splitlines())
    assert starts[claim.output] == 1  # redone once, by one of the others
    assert sorted(starts.values()) == [1] * 9
    for record in records:  # no torn output
        assert file_sha256(out / record["output"]) == record["output_sha256"]
    assert not list(out.glob(".*.tmp"))
    assert not (out / CLAIMS).exists()  # the stale claim taken over, every claim released
