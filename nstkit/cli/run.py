"""``nstkit run`` and ``nstkit demo``: a recipe over folders of images."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from nstkit.cli.common import (
    check_device,
    console,
    err,
    fail,
    host,
    load,
    load_extractor,
    prepare_out,
    run_errors,
)
from nstkit.cli.options import (
    Address,
    Content,
    Device,
    DryRun,
    Engine,
    FailFast,
    Iterations,
    Masks,
    Out,
    Overwrite,
    Quiet,
    RecipeRef,
    Recursive,
    Regions,
    SaveEvery,
    Seed,
    Sets,
    Shard,
    Size,
    Strength,
    Style,
    overrides,
    shard_option,
)
from nstkit.errors import NstkitError
from nstkit.samples import samples_dir

if TYPE_CHECKING:
    from nstkit.executors import Executor
    from nstkit.recipe import Recipe
    from nstkit.runner.execute import RunOptions, RunSummary
    from nstkit.runner.plan import Job


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(demo)


def run(
    recipe: RecipeRef,
    content: Content,
    style: Style,
    out: Out,
    recursive: Recursive = False,
    device: Device = "auto",
    size: Size = None,
    iterations: Iterations = None,
    seed: Seed = None,
    strength: Strength = None,
    masks: Masks = None,
    regions: Regions = None,
    sets: Sets = None,
    batch_size: Annotated[int, typer.Option(
        min=1, help="Same-size content images optimised together per style.")] = 1,
    overwrite: Overwrite = False,
    dry_run: DryRun = False,
    shard: Shard = None,
    engine: Engine = "local",
    address: Address = None,
    save_every: SaveEvery = None,
    fail_fast: FailFast = False,
    quiet: Quiet = False,
) -> None:
    """Apply RECIPE to every content x style pair; resumable, recorded in OUT/manifest.jsonl.

    Exit codes: 0 all done, 1 some jobs failed, 2 bad usage or recipe, 130 interrupted.
    """
    from nstkit.runner.execute import RunOptions
    from nstkit.runner.plan import find_images, plan_jobs, select_shard
    from nstkit.runner.status import write_plan

    resolved = load(recipe, overrides(sets, size=size, iterations=iterations, seed=seed,
                                      strength=strength, save_every=save_every, masks=masks,
                                      regions=regions))
    check_device(device, engine)
    try:
        contents = [p for path in content for p in find_images(path, recursive, "content", out)]
        styles = [p for path in style for p in find_images(path, recursive, "style", out)]
        shard_spec = shard_option(shard)
    except NstkitError as exc:
        fail(exc)
    planned = plan_jobs(contents, styles, resolved.name, resolved.config.output.format)
    jobs = select_shard(planned, *shard_spec) if shard_spec else planned
    if dry_run:
        _print_plan(jobs, resolved, out, overwrite, batch_size, device)
        return
    try:
        executor = host().executors.get(engine)(address=address)
    except NstkitError as exc:
        fail(exc)
    load_extractor(resolved, device)
    prepare_out(out)
    options = RunOptions(out, device, batch_size, fail_fast, shard_spec)
    write_plan(out, resolved, planned, shard_spec[1] if shard_spec else 1)
    _run(resolved, jobs, options, overwrite, quiet, executor)


def _print_plan(jobs: list[Job], recipe: Recipe, out: Path, overwrite: bool,
                batch_size: int = 1, device: str = "auto") -> None:
    from nstkit.runner.execute import InputHashes, split_done

    todo, done = split_done(jobs, recipe, out, overwrite, InputHashes())
    table = Table("content", "style", "output", "status", title=f"{recipe.name}: "
                  f"{len(todo)} to do, {len(done)} done")
    finished = set(done)
    for job in jobs:
        table.add_row(str(job.content), str(job.style), str(out / job.output),
                      "done" if job in finished else "to do")
    console.print(table)
    _print_estimate(jobs, recipe, batch_size, device)


def _print_estimate(jobs: list[Job], recipe: Recipe, batch_size: int,
                    device: str = "auto") -> None:
    """The memory plan for the largest content image (after resizing), per batch: whole or
    tiled, tiles per step, memory per tile, the total and the memory ``device`` has free."""
    from PIL import Image

    from nstkit.components import resolve_device
    from nstkit.memory import available_memory, result_size
    from nstkit.memory_plan import plan_for_recipe

    sizes = {}
    for path in {job.content for job in jobs}:
        try:
            with Image.open(path) as image:
                width, height = image.size
        except OSError:
            continue
        sizes[path] = result_size(height, width, recipe.data["size"])
    if not sizes:
        return
    largest = max(sizes, key=lambda path: sizes[path][0] * sizes[path][1])
    batch = min(batch_size, len(jobs))
    try:
        free = available_memory(resolve_device(None if device == "auto" else device))
        plan = plan_for_recipe(recipe.config, *sizes[largest], batch, free)
    except (NstkitError, RuntimeError, ValueError, TypeError) as exc:
        console.print(f"memory plan: not available ({exc})", highlight=False)
        return
    verdict = "" if plan.fits else " [red]does not fit[/red]:"
    console.print(f"memory plan for {largest.name}:{verdict} {escape(plan.describe())}",
                  highlight=False)
    if not plan.fits:
        console.print("  " + escape(plan.advice), highlight=False)


def _run(recipe: Recipe, jobs: list[Job], options: RunOptions, overwrite: bool,
         quiet: bool, executor: Executor) -> None:
    from nstkit.executors import RunRequest
    from nstkit.runner.display import BatchDisplay
    from nstkit.runner.execute import InputHashes, split_done, write_summary
    from nstkit.runner.gallery import write_gallery

    plugins, out = host(), options.out
    todo, done = split_done(jobs, recipe, out, overwrite, InputHashes())
    display = BatchDisplay(err, live=err.is_terminal and not quiet)
    display.start(len(todo), len(done))
    plugins.add(display, name="nstkit.runner.display")
    try:
        with run_errors(out):
            summary = executor.run(RunRequest(recipe, todo, options, plugins, lambda o: (
                display.job_finished(o.job.output, o.status, o.seconds, o.error or "")),
                display))
            skipped = len(done) + summary.count("skipped")  # + those other workers recorded
            write_summary(out, summary, skipped, options.shard)
            gallery = write_gallery(out)
    finally:
        display.close()
        plugins.remove("nstkit.runner.display")
    _print_summary(summary, len(todo) - summary.count("skipped"), skipped, out, options.shard)
    console.print(f"gallery: {gallery}", highlight=False)
    raise typer.Exit(summary.exit_code)


def _print_summary(summary: RunSummary, planned: int, skipped: int, out: Path,
                   shard: tuple[int, int] | None = None) -> None:
    from nstkit.runner.manifest import manifest_name

    table = Table("done", "failed", "skipped (already done)", "not run",
                  title=f"nstkit run -> {out}" + (" (interrupted)" if summary.interrupted else ""))
    finished = summary.count("done") + summary.count("failed")
    table.add_row(str(summary.count("done")), str(summary.count("failed")), str(skipped),
                  str(planned - finished))
    console.print(table)
    failed = [o for o in summary.outcomes if o.status == "failed"]
    for outcome in failed:  # plain lines: whole names and errors, easy to grep
        console.print(f"failed: {outcome.job.output}: {outcome.error or ''}", highlight=False,
                      markup=False)
    console.print(f"manifest: {out / manifest_name(shard)}", highlight=False)


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("out"),
    recipe: Annotated[str, typer.Option(help="Recipe to run.")] = "preview",
    size: Size = None,
    iterations: Iterations = None,
    device: Device = "auto",
    quiet: Quiet = False,
) -> None:
    """Run RECIPE (default: preview) over every bundled sample photo x bundled painting.

    The same as ``nstkit run preview --content SAMPLES/content --style SAMPLES/style``.
    """
    run(recipe, [samples_dir() / "content"], [samples_dir() / "style"], out, device=device,
        size=size, iterations=iterations, quiet=quiet)
