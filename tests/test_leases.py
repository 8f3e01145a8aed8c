"""Cooperative workers: claims on jobs (create, renew, release, take over, race), the shared
job queue, ``nstkit status`` on claims, and several ``nstkit run`` processes on one folder."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from nstkit.recipe import load_recipe
from nstkit.runner import leases, sharing
from nstkit.runner.leases import CLAIMS, Leases, claim_name, machine, read_claim
from nstkit.runner.manifest import file_sha256, read_records
from nstkit.runner.plan import Job, plan_jobs
from nstkit.runner.sharing import NewRecords, SharedJobs
from nstkit.runner.status import write_plan

# random VGG16 weights: each process builds them faster than it loads the original VGG19
QUICK = ["--size", "32", "--iterations", "2", "--quiet", "--set", "extractor.name=vgg16",
         "--set", "extractor.weights=random"]


def foreign_claim(out: Path, output: str, age: float = 0.0, **body: object) -> Path:
    """A claim on ``output`` written as a worker on another machine would, last renewed
    ``age`` seconds ago."""
    path = out / CLAIMS / claim_name(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"output": output, "host": "gpu-7", "pid": 4242,
                                "worker": "gpu-7:4242:beef", "machine": "gpu-7 other-boot",
                                "started": "2025-01-01T00:00:00+00:00", **body}))
    when = time.time() - age
    os.utime(path, (when, when))
    return path


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def short_expiry(monkeypatch: pytest.MonkeyPatch) -> float:
    """Claims stale after 1 s without renewal (renewed every 1/8 s), the shared queue polling
    every 0.1 s."""
    monkeypatch.setattr(leases, "STALE_AFTER", 1.0)
    monkeypatch.setattr(sharing, "POLL", 0.1)
    return 1.0


# --- claims -----------------------------------------------------------------------------------


def test_a_claim_is_exclusive_says_who_holds_it_and_is_released(tmp_path: Path) -> None:
    with Leases(tmp_path) as mine, Leases(tmp_path) as theirs:
        assert mine.claim("a.png")
        assert mine.claim("a.png")  # already held: still ours
        assert not theirs.claim("a.png")
        claim = read_claim(tmp_path / CLAIMS / claim_name("a.png"))
        assert claim is not None
        assert (claim.output, claim.pid, claim.worker, claim.machine) == (
            "a.png", os.getpid(), mine.worker, machine())
        assert abs(claim.renewed - time.time()) < 5
        assert claim.stale() == ""
        mine.release("a.png")
        assert not (tmp_path / CLAIMS / claim_name("a.png")).exists()
        assert theirs.claim("a.png")
        assert not mine.claim("a.png")
    assert not (tmp_path / CLAIMS).exists()  # leaving the block released all, folder removed


def test_leaving_the_block_by_an_exception_releases_every_claim(tmp_path: Path) -> None:
    def interrupted() -> None:
        with Leases(tmp_path) as held:
            assert held.claim("a.png")
            assert held.claim("b.png")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    with Leases(tmp_path) as other:
        assert other.claim("a.png")
        assert other.claim("b.png")


@pytest.mark.parametrize("output", ["../../etc/passwd", "a/b.png", "x" * 300 + ".png",
                                    ".hidden", "ü n i.png"])
def test_claim_names_stay_in_the_claims_folder(tmp_path: Path, output: str) -> None:
    name = claim_name(output)
    assert "/" not in name
    assert name.endswith(".claim")
    assert len(name) < 140
    assert (tmp_path / name).parent == tmp_path
    assert name != claim_name(output + "x")
    with Leases(tmp_path) as held:
        assert held.claim(output)
        assert [p.name for p in (tmp_path / CLAIMS).iterdir()] == [name]


def test_a_held_claim_is_renewed_and_never_goes_stale(tmp_path: Path, short_expiry) -> None:
    with Leases(tmp_path) as held:
        assert held.claim("a.png")
        path = tmp_path / CLAIMS / claim_name("a.png")
        os.utime(path, (time.time() - 0.9, time.time() - 0.9))
        time.sleep(0.4)  # three renewals
        assert time.time() - path.stat().st_mtime < 0.3
        time.sleep(1.2)  # past the expiry
        with Leases(tmp_path) as other:
            assert not other.claim("a.png")


def test_a_claim_of_a_dead_pid_on_this_machine_is_taken_over_at_once(tmp_path: Path) -> None:
    path = foreign_claim(tmp_path, "a.png", pid=dead_pid(), machine=machine())
    assert "is gone" in read_claim(path).stale()
    with Leases(tmp_path) as held:
        assert held.claim("a.png")
        assert read_claim(path).worker == held.worker
    assert not (tmp_path / CLAIMS).exists()


def test_a_claim_from_another_host_is_taken_over_after_the_expiry(tmp_path: Path,
                                                                  short_expiry) -> None:
    path = foreign_claim(tmp_path, "a.png", pid=os.getpid() + 10**6)  # its pid means nothing here
    with Leases(tmp_path) as held:
        assert not held.claim("a.png")  # fresh
        time.sleep(short_expiry + 0.2)
        assert read_claim(path).stale().startswith("not renewed for")
        assert held.claim("a.png")
        assert read_claim(path).worker == held.worker
        assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no marker left


def test_a_claim_with_an_unreadable_body_expires_by_its_mtime(tmp_path: Path,
                                                              short_expiry) -> None:
    path = tmp_path / CLAIMS / claim_name("a.png")
    path.parent.mkdir()
    path.write_bytes(b'{"host": "gpu')  # its writer killed mid-write
    with Leases(tmp_path) as held:
        assert not held.claim("a.png")
        old = time.time() - 2 * short_expiry
        os.utime(path, (old, old))
        assert held.claim("a.png")


def test_concurrent_claimers_get_each_job_exactly_once(tmp_path: Path) -> None:
    outputs = [f"{i}.png" for i in range(30)]
    workers = [Leases(tmp_path) for _ in range(6)]
    start = threading.Barrier(len(workers))
    won: dict[str, list[str]] = {output: [] for output in outputs}

    def claim_all(held: Leases, order: list[str]) -> None:
        start.wait()
        for output in order:
            if held.claim(output):
                won[output].append(held.worker)

    orders = [random.Random(seed).sample(outputs, len(outputs)) for seed in range(6)]
    threads = [threading.Thread(target=claim_all, args=(held, order))
               for held, order in zip(workers, orders, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(len(winners) == 1 for winners in won.values()), won
    for held in workers:
        held.close()


def test_concurrent_takeover_of_a_stale_claim_has_one_winner(tmp_path: Path) -> None:
    def take(held: Leases, output: str, start: threading.Barrier, results: list[bool]) -> None:
        start.wait()
        results.append(held.claim(output))

    for round_ in range(15):
        output = f"{round_}.png"
        foreign_claim(tmp_path, output, age=10 * leases.STALE_AFTER)
        workers = [Leases(tmp_path) for _ in range(6)]
        start = threading.Barrier(len(workers))
        results: list[bool] = []
        threads = [threading.Thread(target=take, args=(held, output, start, results))
                   for held in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results.count(True) == 1, (round_, results)
        assert not list((tmp_path / CLAIMS).glob("*.break"))
        for held in workers:
            held.close()


def test_a_holder_whose_claim_was_taken_over_does_not_remove_the_new_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = Leases(tmp_path)
    assert first.claim("a.png")  # renews every 15 s: not during this test
    path = tmp_path / CLAIMS / claim_name("a.png")
    os.utime(path, (time.time() - 200, time.time() - 200))  # as if it had hung
    with Leases(tmp_path) as second:
        assert second.claim("a.png")
        first.renew()
        assert first.lost == {"a.png"}
        first.close()
        assert read_claim(path).worker == second.worker


# --- the shared queue -------------------------------------------------------------------------


def _record(out: Path, output: str, status: str, finished: float) -> None:
    from datetime import datetime, timezone

    stamp = datetime.fromtimestamp(finished, timezone.utc).isoformat(timespec="microseconds")
    with (out / "manifest.jsonl").open("a") as handle:
        handle.write(json.dumps({"output": output, "status": status, "finished": stamp}) + "\n")


def _jobs(*names: str) -> list[Job]:
    return [Job(Path("c.png"), Path("s.png"), name) for name in names]


def test_new_records_reads_only_complete_lines_after_the_plan(tmp_path: Path) -> None:
    since = time.time()
    _record(tmp_path, "old.png", "done", since - 5)
    seen = NewRecords(tmp_path, since)
    assert seen() == {}
    with (tmp_path / "manifest.shard-1-of-2.jsonl").open("a") as handle:
        handle.write('{"output": "new.png", "status": "failed", "finished": "9999')
    assert seen() == {}  # a line still being written
    with (tmp_path / "manifest.shard-1-of-2.jsonl").open("a") as handle:
        handle.write('-01-01"}\n')
    assert seen()["new.png"]["status"] == "failed"


def test_the_queue_hands_out_claimed_jobs_and_skips_those_recorded_meanwhile(
        tmp_path: Path, short_expiry) -> None:
    since, skipped = time.time(), []
    _record(tmp_path, "redo.png", "failed", since - 5)  # failed before this run: run it
    _record(tmp_path, "done.png", "done", since + 1)  # by another worker, in this pass
    _record(tmp_path, "failed.png", "failed", since + 1)
    a, b, c, d, e = _jobs("redo.png", "done.png", "failed.png", "busy.png", "free.png")
    with Leases(tmp_path) as other:
        assert other.claim("busy.png")
        with SharedJobs(tmp_path, [[a, b], [c], [d, e]], since,
                        lambda job, how: skipped.append((job.output, how))) as shared:
            assert shared.take() == [a]
            assert shared.take() == [e]  # busy.png is held by another worker
            assert shared.take() == []
            assert shared.unfinished
            shared.release([a, e])
            other.release("busy.png")  # given up without a record (Ctrl-C)
            assert shared.take(wait=True) == [d]
            assert shared.take(wait=True) == []
            assert not shared.unfinished
    assert skipped == [("done.png", "done by another worker"),
                       ("failed.png", "failed by another worker")]


def test_a_waiting_job_recorded_by_its_holder_is_dropped(tmp_path: Path, short_expiry) -> None:
    since, skipped = time.time(), []
    [job] = _jobs("a.png")
    with Leases(tmp_path) as other, SharedJobs(
            tmp_path, [[job]], since, lambda job, how: skipped.append(how)) as shared:
        assert other.claim("a.png")
        assert shared.take() == []
        _record(tmp_path, "a.png", "done", time.time())
        other.release("a.png")
        assert shared.take(wait=True) == []
    assert skipped == ["done by another worker"]


# --- whole runs -------------------------------------------------------------------------------


@pytest.fixture
def nine(tiny: Path, tmp_path: Path) -> tuple[Path, Path]:
    """3 content x 3 style images: 9 jobs."""
    content, style = tmp_path / "content", tmp_path / "style"
    content.mkdir()
    style.mkdir()
    for index, name in enumerate(["a", "b", "c"]):
        shutil.copy(tiny / "content" / ["chelsea.png", "coffee.png"][index % 2],
                    content / f"{name}.png")
        shutil.copy(tiny / "style" / ["starry_night.png", "starry_night_gold.png"][index % 2],
                    style / f"{name}.png")
    return content, style


def renew_until(claim: Path, done: threading.Event, timeout: float = 300.0) -> None:
    """Keep a foreign claim fresh (as its live worker would) until ``done`` is set."""
    deadline = time.time() + timeout
    while not done.is_set() and time.time() < deadline:
        now = time.time()
        os.utime(claim, (now, now))
        time.sleep(0.05)


@pytest.mark.slow
def test_a_stale_claim_from_another_host_delays_its_job_and_the_run_takes_it_over(
        tiny: Path, tmp_path: Path, invoke, records, short_expiry) -> None:
    out = tmp_path / "out"
    victim = "chelsea__starry_night__gatys.png"
    claim = foreign_claim(out, victim)
    others_done, released = threading.Event(), []

    def watch() -> None:  # the other worker renews its claim until the other 3 jobs are done
        renewer = threading.Thread(target=renew_until, args=(claim, others_done))
        renewer.start()
        manifest = out / "manifest.jsonl"
        deadline = time.time() + 300
        while time.time() < deadline and not (
                manifest.exists() and len(manifest.read_text().splitlines()) >= 3):
            time.sleep(0.05)
        others_done.set()
        renewer.join()
        released.append(time.time())

    watcher = threading.Thread(target=watch)
    watcher.start()
    result = invoke("run", "gatys", "--content", tiny / "content", "--style", tiny / "style",
                    "--out", out, *QUICK)
    others_done.set()
    watcher.join()
    assert result.exit_code == 0, result.output
    found = records(out)
    assert sorted(r["output"] for r in found) == sorted(set(r["output"] for r in found))
    assert len(found) == 4
    assert {r["status"] for r in found} == {"done"}
    assert found[-1]["output"] == victim  # waited for its claim to expire, then ran it
    from datetime import datetime

    finished = datetime.fromisoformat(found[-1]["finished"]).timestamp()
    assert finished - released[0] > short_expiry
    assert not claim.exists()
    assert not (out / CLAIMS).exists()


def test_status_shows_running_jobs_and_stale_claims(tmp_path: Path, invoke) -> None:
    recipe = load_recipe("gatys")
    jobs = plan_jobs([Path("a.png"), Path("b.png"), Path("c.png")], [Path("s.png")],
                     recipe.name, "png")
    out = tmp_path / "out"
    out.mkdir()
    write_plan(out, recipe, jobs)
    foreign_claim(out, jobs[1].output, age=10 * leases.STALE_AFTER)
    with Leases(out) as held:
        assert held.claim(jobs[0].output)
        result = invoke("status", out)
    assert result.exit_code == 1
    assert "3 jobs (gatys, 1 shard): 0 done, 0 failed, 2 missing, 1 running, 1 stale claim" \
        in result.output
    lines = result.output.splitlines()
    host = leases.socket.gethostname()
    assert re.match(rf"running: a__s__gatys.png \(shard 0\): host {re.escape(host)}, pid "
                    rf"{os.getpid()}, started [0-9] s ago, renewed [0-9] s ago", lines[1])
    assert ("missing: b__s__gatys.png (shard 0): no record (never ran, or its worker was "
            "killed); stale claim (host gpu-7, pid 4242, started ") in result.output
    assert "; not renewed for 120" in result.output  # 1200 s, or a second more
    assert "): the next worker on the folder takes it over" in result.output


def _nstkit(*args: object, env: dict[str, str] | None = None,
            plugin: str | None = None) -> subprocess.Popen:
    """``nstkit ARGS`` in a new process; ``plugin``: Python code defining ``Plugin``,
    registered before the command runs."""
    main = "from nstkit.cli import main; main()"
    if plugin is not None:
        main = (f"{plugin}\nfrom nstkit.plugins import get_host\n"
                f"get_host().add(Plugin(), name='test')\n{main}")
    return subprocess.Popen([sys.executable, "-c", main, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NSTKIT_DISABLE_PLUGIN_AUTOLOAD": "1",
                                 "OMP_NUM_THREADS": "1", **(env or {})})


# logs "pid job" for every job started; waits in its first job until every worker holds one
LOG_STARTS = """
import os, time
from pathlib import Path
import nstkit
LOG = Path(os.environ["NSTKIT_TEST_LOG"])
class Plugin:
    first = True
    @nstkit.hookimpl
    def on_job_start(self, job):
        with LOG.open("a") as handle:
            handle.write(f"{os.getpid()} {job.name}\\n")
        if Plugin.first and "NSTKIT_TEST_WORKERS" in os.environ:
            Plugin.first = False
            (LOG.parent / f"ready-{os.getpid()}").touch()
            deadline = time.monotonic() + 120
            while (len(list(LOG.parent.glob("ready-*"))) < int(os.environ["NSTKIT_TEST_WORKERS"])
                   and time.monotonic() < deadline):
                time.sleep(0.05)
"""


@pytest.mark.slow
def test_three_processes_on_one_folder_do_each_of_9_jobs_once(nine: tuple[Path, Path],
                                                               tmp_path: Path, invoke) -> None:
    content, style = nine
    out, log = tmp_path / "out", tmp_path / "starts.log"
    env = {"NSTKIT_TEST_LOG": str(log), "NSTKIT_TEST_WORKERS": "3"}
    workers = [_nstkit("run", "gatys", "--content", content, "--style", style, "--out", out,
                       *QUICK, env=env, plugin=LOG_STARTS) for _ in range(3)]
    results = [(p.wait(timeout=300), p.communicate()) for p in workers]
    assert [code for code, _ in results] == [0, 0, 0], results
    records = list(read_records(out))
    assert len(records) == 9
    assert {r["status"] for r in records} == {"done"}
    assert len({r["output"] for r in records}) == 9
    starts = [line.split() for line in log.read_text().splitlines()]
    assert sorted(Counter(name for _, name in starts).values()) == [1] * 9  # each job once
    assert len({pid for pid, _ in starts}) == 3  # and every worker did some
    for record in records:
        assert file_sha256(out / record["output"]) == record["output_sha256"]
    assert not (out / CLAIMS).exists()
    status = invoke("status", out)
    assert "9 jobs (gatys, 1 shard): 9 done, 0 failed, 0 missing" in status.output
    assert status.exit_code == 0


@pytest.mark.slow
def test_the_ray_driver_claims_what_it_hands_out_and_waits_for_claimed_jobs(
        tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, short_expiry) -> None:
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    from nstkit.executors import RunRequest
    from nstkit.executors.ray import RayExecutor
    from nstkit.plugins import get_host
    from nstkit.runner.execute import RunOptions

    out = tmp_path / "out"
    out.mkdir()
    recipe = load_recipe("gatys", ["size=32", "optimizer.iterations=2", "extractor.name=vgg16",
                                   "extractor.weights=random"])
    jobs = plan_jobs(sorted((tiny / "content").iterdir()), sorted((tiny / "style").iterdir()),
                     recipe.name, "png")
    held, taken = Leases(out), []
    claim = Leases.claim

    def spy(self: Leases, output: str) -> bool:
        won = claim(self, output)
        taken.append((self.worker, output, won))
        return won

    monkeypatch.setattr(Leases, "claim", spy)
    assert held.claim(jobs[0].output)  # another worker runs it

    def release_when_the_others_are_done() -> None:
        deadline = time.monotonic() + 120
        while len(list(read_records(out))) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        held.close()

    releaser = threading.Thread(target=release_when_the_others_are_done)
    releaser.start()
    ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level="WARNING",
             object_store_memory=100 * 1024 * 1024)
    try:
        summary = RayExecutor(actors=1).run(RunRequest(recipe, jobs, RunOptions(out),
                                                       get_host()))
    finally:
        ray.shutdown()
        releaser.join()
    assert summary.count("done") == 4, [o.error for o in summary.outcomes]
    records = list(read_records(out))
    assert [r["output"] for r in records][-1] == jobs[0].output  # once its claim was given up
    assert len(records) == 4
    driver = {worker for worker, _, won in taken if won} - {held.worker}
    assert len(driver) == 1  # the driver claimed every job it ran
    assert sorted(o for w, o, won in taken if won and w in driver) == sorted(
        job.output for job in jobs)
    assert not (out / CLAIMS).exists()
