"""``OUT/plan.json`` (every job a run planned, with its shard) and ``nstkit status``: which
planned jobs are done, failed, running or missing, merged over the manifests of every shard
and the claims of the workers (:mod:`nstkit.runner.leases`)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nstkit.atomic import write_atomic
from nstkit.errors import NstkitError
from nstkit.recipe import Recipe
from nstkit.runner.leases import Claim, read_claims
from nstkit.runner.manifest import file_sha256, latest_records
from nstkit.runner.plan import Job

PLAN = "plan.json"


def write_plan(out_dir: Path, recipe: Recipe, jobs: Sequence[Job], shards: int = 1) -> Path:
    """Write ``OUT/plan.json`` atomically: the whole plan (before sharding) and, for each
    output, the shard of ``shards`` that runs it (the same one :func:`select_shard` picks).

    Every shard of a job array writes the same file, so which one wins does not matter.
    """
    ordered = sorted(jobs, key=lambda job: job.output)
    data = {"recipe": recipe.name, "recipe_hash": recipe.hash, "shards": shards,
            "jobs": [{"output": job.output, "content": str(job.content),
                      "style": str(job.style), "shard": position % shards}
                     for position, job in enumerate(ordered)]}
    return write_atomic(out_dir / PLAN, json.dumps(data, indent=1, ensure_ascii=False))


@dataclass
class JobState:
    """One planned output: ``done``, ``failed``, ``running`` (a worker holds a live claim on
    it) or ``missing``, with why; ``claim``: its claim, live or stale, if it has one."""

    output: str
    shard: int
    state: str
    detail: str = ""
    claim: Claim | None = None


@dataclass
class BatchStatus:
    """Every planned job's state; ``resubmit`` lists the shards with work left."""

    recipe: str
    shards: int
    jobs: list[JobState] = field(default_factory=list)

    def count(self, state: str) -> int:
        return sum(job.state == state for job in self.jobs)

    @property
    def stale(self) -> list[JobState]:
        """The unfinished jobs with a stale claim (the next worker to reach one takes it)."""
        return [job for job in self.jobs if job.claim is not None
                and job.state in ("failed", "missing")]

    @property
    def resubmit(self) -> list[int]:
        return sorted({job.shard for job in self.jobs if job.state in ("failed", "missing")})

    @property
    def exit_code(self) -> int:
        """0 when every job is done, 1 otherwise."""
        return 0 if all(job.state == "done" for job in self.jobs) else 1


def _state(record: dict[str, Any] | None, recipe_hash: str, target: Path,
           verify: bool) -> tuple[str, str]:
    if record is None:
        return "missing", "no record (never ran, or its worker was killed)"
    if record.get("status") == "failed":
        return "failed", str(record.get("error") or "")
    if record.get("recipe_hash") != recipe_hash:
        return "missing", "done with another recipe or --set"
    if not target.is_file():
        return "missing", "recorded done, but the output file is gone"
    if verify and record.get("output_sha256") != file_sha256(target):
        return "missing", "the output file differs from the one recorded"
    return "done", ""


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def describe_claim(claim: Claim, now: float) -> str:
    """``host h, pid 12, started 3 min ago, renewed 5 s ago``."""
    started = "" if claim.started is None else f", started {_ago(now - claim.started)} ago"
    return (f"host {claim.host}, pid {claim.pid if claim.pid else '?'}{started}, "
            f"renewed {_ago(now - claim.renewed)} ago")


def _claimed(state: str, detail: str, claim: Claim | None, now: float) -> tuple[str, str]:
    """The state and detail of a job, given its claim."""
    if claim is None or state == "done":
        return state, detail
    why = claim.stale(now)
    if not why:
        return "running", describe_claim(claim, now)
    return state, (f"{detail}; stale claim ({describe_claim(claim, now)}; {why}): the next "
                   f"worker on the folder takes it over")


def batch_status(out_dir: Path, verify: bool = False) -> BatchStatus:
    """Merge every manifest of ``out_dir`` and its claims against its ``plan.json``.

    Args:
        verify: also check each done output's sha256 against its record (reads every output).

    Raises:
        NstkitError: ``out_dir`` holds no readable ``plan.json``.
    """
    path = out_dir / PLAN
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
        jobs, shards, recipe_hash = plan["jobs"], int(plan["shards"]), plan["recipe_hash"]
    except FileNotFoundError:
        raise NstkitError(f"{str(out_dir)!r} has no {PLAN}: not an nstkit run output folder "
                          f"(nstkit run writes it when it starts)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NstkitError(f"{str(path)!r} cannot be read: {exc}") from None
    records = latest_records(out_dir)
    claims = read_claims(out_dir, [job["output"] for job in jobs])
    status, now = BatchStatus(str(plan.get("recipe", "")), shards), time.time()
    for job in jobs:
        output, claim = job["output"], claims.get(job["output"])
        state, detail = _claimed(*_state(records.get(output), recipe_hash, out_dir / output,
                                         verify), claim, now)
        status.jobs.append(JobState(output, int(job["shard"]), state, detail, claim))
    return status
