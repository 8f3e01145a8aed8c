"""``nstkit status`` and ``nstkit template``: job arrays, checked and written for you."""

from __future__ import annotations

import json
import re
import shlex
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from nstkit.cli.common import console, fail
from nstkit.errors import NstkitError
from nstkit.recommended import RECOMMENDED


def register(app: typer.Typer) -> None:
    app.command()(status)
    app.command()(template)


def status(
    out: Annotated[Path, typer.Argument(help="The output folder of nstkit run.")],
    verify: Annotated[bool, typer.Option(
        help="Also check each done output's sha256 against its record.")] = False,
    show: Annotated[int, typer.Option(help="List at most this many unfinished jobs.")] = 20,
    gallery: Annotated[bool, typer.Option(
        help="Also rebuild OUT/index.html from every manifest.")] = False,
) -> None:
    """Merge OUT's per-shard manifests and claims: done, failed, running and missing jobs
    (running: the host, pid and age of the worker's claim; stale claims too), and which
    shards to resubmit.

    Exit codes: 0 every planned job is done, 1 some are failed, missing or running, 2 OUT is
    not a run.
    """
    from nstkit.runner.gallery import write_gallery
    from nstkit.runner.status import batch_status

    try:
        found = batch_status(out, verify)
        if gallery:
            console.print(f"gallery: {write_gallery(out)}", highlight=False)
    except NstkitError as exc:
        fail(exc)
    total, running, stale = len(found.jobs), found.count("running"), len(found.stale)
    console.print(f"{out}: {total} jobs ({found.recipe}, {found.shards} shard"
                  f"{'s' * (found.shards > 1)}): {found.count('done')} done, "
                  f"{found.count('failed')} failed, {found.count('missing')} missing"
                  + (f", {running} running" if running else "")
                  + (f", {stale} stale claim{'s' * (stale > 1)}" if stale else ""),
                  highlight=False)
    states = ("done", "failed", "missing", "running")[:4 if running else 3]
    if found.shards > 1:
        table = Table("shard", *states)
        for index in range(found.shards):
            mine = [job.state for job in found.jobs if job.shard == index]
            table.add_row(str(index), *(str(mine.count(s)) for s in states))
        console.print(table)
    unfinished = sorted((job for job in found.jobs if job.state != "done"),
                        key=lambda job: job.state != "running")  # running ones first
    if unfinished:
        for job in unfinished[:show]:  # plain lines: whole names, easy to grep
            console.print(f"{job.state}: {job.output} (shard {job.shard}): {job.detail}",
                          highlight=False, markup=False)
        if len(unfinished) > show:
            console.print(f"... and {len(unfinished) - show} more (--show N)")
        shards = ",".join(map(str, found.resubmit))
        if not shards:
            console.print("every unfinished job is running", highlight=False)
        elif found.shards > 1:
            console.print(f"resubmit shards: {shards}  (SLURM: sbatch --array={shards} ...; "
                          f"or nstkit run ... --shard I/{found.shards} for each)",
                          highlight=False)
        else:
            console.print("rerun the same nstkit run command to finish them", highlight=False)
    raise typer.Exit(found.exit_code)


class Scheduler(str, Enum):
    slurm = "slurm"
    k8s = "k8s"


TEMPLATES = {Scheduler.slurm: "slurm.sh", Scheduler.k8s: "k8s.yaml"}


def template(
    scheduler: Annotated[Scheduler, typer.Argument(help="slurm | k8s")],
    recipe: Annotated[str, typer.Option(help="Recipe to run.")] = RECOMMENDED,
    content: Annotated[str, typer.Option(help="Content folder, as the jobs see it.")]
    = "/data/photos",
    style: Annotated[str, typer.Option(help="Style folder, as the jobs see it.")]
    = "/data/paintings",
    out: Annotated[str, typer.Option(help="Output folder, as the jobs see it.")] = "/data/out",
    shards: Annotated[int, typer.Option(min=1, help="Array size (tasks / pods).")] = 8,
) -> None:
    """Print a ready-to-edit job array (SLURM batch script or Kubernetes Indexed Job) that
    runs nstkit run --shard auto; redirect it to a file and submit it."""
    text = (resources.files("nstkit") / "data" / "templates" / TEMPLATES[scheduler]).read_text(
        encoding="utf-8")
    quote = shlex.quote if scheduler is Scheduler.slurm else (lambda v: json.dumps(v)[1:-1])
    name = re.sub(r"[^a-z0-9-]+", "-", Path(recipe).stem.lower()).strip("-")[:40] or "run"
    values = {"recipe": quote(recipe), "content": quote(content), "style": quote(style),
              "out": quote(out), "name": name, "shards": str(shards), "last": str(shards - 1)}
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    console.print(text, highlight=False, markup=False, end="", soft_wrap=True)
