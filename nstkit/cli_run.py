"""``nstkit run``, ``nstkit recipes`` and ``nstkit validate``: recipes over folders of images."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import torch
import typer
from rich.markup import escape
from rich.table import Table

from nstkit.cli import _fail, app, console, err
from nstkit.errors import NstkitError
from nstkit.plugins import get_host
from nstkit.recipe import Recipe
from nstkit.runner.execute import RunOptions, RunSummary
from nstkit.runner.plan import Job
from nstkit.runner.status import write_plan

if TYPE_CHECKING:
    from nstkit.executors import Executor

recipes_app = typer.Typer(help="List built-in recipes, or show one resolved.",
                          invoke_without_command=True)
app.add_typer(recipes_app, name="recipes")

Sets = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a recipe key: --set losses.1.weight=1e-2 (repeatable).")]


def _load(recipe: str, sets: list[str]) -> Recipe:
    from nstkit.recipe import load_recipe

    try:
        return load_recipe(recipe, sets)
    except NstkitError as exc:
        _fail(exc)


def _check_device(device: str, engine: str = "local") -> None:
    if device in ("auto", "cpu"):
        return
    if engine != "local":  # the workers' GPUs, not this machine's
        if device != "cuda":
            _fail(NstkitError(f"--device with --engine {engine} must be auto, cpu or cuda "
                              f"(each worker uses the GPU it is given), got {device!r}"))
        return
    try:
        dev = torch.device(device)
    except RuntimeError:
        dev = None
    if dev is None or dev.type != "cuda":
        _fail(NstkitError(f"--device must be auto, cpu, cuda or cuda:N; got {device!r}"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        _fail(NstkitError(f"--device {device}: CUDA is not available on this machine "
                          f"(use --device cpu or auto)"))
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        _fail(NstkitError(f"--device {device}: only {torch.cuda.device_count()} CUDA "
                          f"device(s) here"))


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        _fail(NstkitError(f"--out {str(out)!r} exists and is not a folder"))
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".nstkit-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        _fail(NstkitError(f"--out {str(out)!r} is not writable: {exc.strerror or exc}"))


@app.command()
def run(
    recipe: Annotated[str, typer.Argument(help="A built-in recipe name or a YAML file.")],
    content: Annotated[list[Path], typer.Option(help="Content image or folder (repeatable).")],
    style: Annotated[list[Path], typer.Option(help="Style image or folder (repeatable).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    recursive: Annotated[bool, typer.Option(help="Search folders recursively.")] = False,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    size: Annotated[int | None, typer.Option(help="Override the recipe's size.")] = None,
    iterations: Annotated[int | None, typer.Option(help="Override the iterations.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the seed.")] = None,
    sets: Sets = None,
    batch_size: Annotated[int, typer.Option(
        min=1, help="Same-size content images optimised together per style.")] = 1,
    overwrite: Annotated[bool, typer.Option(help="Redo jobs that are already done.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Print the planned jobs and stop.")] = False,
    shard: Annotated[str | None, typer.Option(
        help="Run shard I of N (0-based), e.g. 0/4, for job arrays; auto: read I and N from "
             "SLURM, Kubernetes Indexed Job or torchrun variables.")] = None,
    engine: Annotated[str, typer.Option(
        help="Where jobs run: local (this process) or ray (actors on a Ray cluster).")]
    = "local",
    address: Annotated[str | None, typer.Option(
        help="--engine ray: the cluster (auto, ray://HOST:10001); default: a local one.")]
    = None,
    save_every: Annotated[int | None, typer.Option(
        min=0, help="Save intermediate images every N steps under OUT/steps/.")] = None,
    fail_fast: Annotated[bool, typer.Option(help="Stop at the first failed job.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Plain one line per job.")] = False,
) -> None:
    """Apply RECIPE to every content x style pair; resumable, recorded in OUT/manifest.jsonl.

    Exit codes: 0 all done, 1 some jobs failed, 2 bad usage or recipe, 130 interrupted.
    """
    from nstkit.runner.plan import find_images, plan_jobs, select_shard

    named = {"size": size, "optimizer.iterations": iterations, "seed": seed,
             "output.save_every": save_every}
    overrides = [*(sets or []), *(f"{k}={v}" for k, v in named.items() if v is not None)]
    resolved = _load(recipe, overrides)
    _check_device(device, engine)
    try:
        contents = [p for path in content for p in find_images(path, recursive, "content", out)]
        styles = [p for path in style for p in find_images(path, recursive, "style", out)]
        shard_spec = _shard(shard)
    except NstkitError as exc:
        _fail(exc)
    planned = plan_jobs(contents, styles, resolved.name, resolved.data["output"]["format"])
    jobs = select_shard(planned, *shard_spec) if shard_spec else planned
    if dry_run:
        _print_plan(jobs, resolved, out, overwrite, batch_size)
        return
    try:
        executor = get_host().executors.get(engine)(address=address)
    except NstkitError as exc:
        _fail(exc)
    _load_extractor(resolved, device)
    _prepare_out(out)
    options = RunOptions(out, device, batch_size, fail_fast, shard_spec)
    write_plan(out, resolved, planned, shard_spec[1] if shard_spec else 1)
    _run(resolved, jobs, options, overwrite, quiet, executor)


def _load_extractor(recipe: Recipe, device: str) -> None:
    """Build the recipe's extractor (cached for the run): a missing, corrupt or unfitting
    weights file stops here, before anything is written to ``--out``."""
    from nstkit.stylize import build_extractor, resolve_device

    kw = recipe.stylize_options()
    try:
        build_extractor(get_host(), kw["extractor"], resolve_device(device),
                        pooling=kw["pooling"], weights=kw["weights"], **kw["extractor_options"])
    except NstkitError as exc:
        _fail(exc)


def _shard(text: str | None) -> tuple[int, int] | None:
    """``--shard``: ``None``, ``I/N``, or ``auto`` (from the job array's variables)."""
    import os

    from nstkit.runner.arrays import shard_from_env
    from nstkit.runner.plan import parse_shard

    if not text:
        return None
    return shard_from_env(os.environ) if text.strip() == "auto" else parse_shard(text)


def _print_plan(jobs: list[Job], recipe: Recipe, out: Path, overwrite: bool,
                batch_size: int = 1) -> None:
    from nstkit.runner.execute import InputHashes, split_done

    todo, done = split_done(jobs, recipe, out, overwrite, InputHashes())
    table = Table("content", "style", "output", "status", title=f"{recipe.name}: "
                  f"{len(todo)} to do, {len(done)} done")
    finished = set(done)
    for job in jobs:
        table.add_row(str(job.content), str(job.style), str(out / job.output),
                      "done" if job in finished else "to do")
    console.print(table)
    _print_estimate(jobs, recipe, batch_size)


def _print_estimate(jobs: list[Job], recipe: Recipe, batch_size: int) -> None:
    """The memory estimate for the largest content image (after resizing), per batch."""
    from PIL import Image

    from nstkit.memory import estimate_for_recipe, result_size

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
        estimate = estimate_for_recipe(recipe.stylize_options(), *sizes[largest], batch)
    except (NstkitError, RuntimeError, ValueError, TypeError) as exc:
        console.print(f"memory estimate: not available ({exc})", highlight=False)
        return
    console.print(f"memory estimate: {estimate}; largest content image {largest.name}",
                  highlight=False)


def _run(recipe: Recipe, jobs: list[Job], options: RunOptions, overwrite: bool,
         quiet: bool, executor: Executor) -> None:
    from nstkit.executors import RunRequest
    from nstkit.runner.display import BatchDisplay
    from nstkit.runner.execute import InputHashes, split_done, write_summary

    host, out = get_host(), options.out
    todo, done = split_done(jobs, recipe, out, overwrite, InputHashes())
    display = BatchDisplay(err, live=err.is_terminal and not quiet)
    display.start(len(todo), len(done))
    host.add(display, name="nstkit.runner.display")
    try:
        summary = executor.run(RunRequest(recipe, todo, options, host, lambda o: (
            display.job_finished(o.job.output, o.status, o.seconds, o.error or "")), display))
        write_summary(out, summary, len(done), options.shard)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except NstkitError as exc:
        _fail(exc)
    except OSError as exc:  # the output folder itself failed (disk full, removed, read-only)
        err.print(f"[red]error:[/red] writing to {escape(str(out))} failed: "
                  f"{escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        display.close()
        host.pm.unregister(name="nstkit.runner.display")
    _print_summary(summary, len(todo), len(done), out, options.shard)
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
    if failed:
        failures = Table("output", "error", title="failed jobs")
        for outcome in failed:
            failures.add_row(outcome.job.output, outcome.error or "")
        console.print(failures)
    console.print(f"manifest: {out / manifest_name(shard)}", highlight=False)


@recipes_app.callback()
def recipes(ctx: typer.Context) -> None:
    """List the built-in recipes with their descriptions."""
    if ctx.invoked_subcommand is not None:
        return
    from nstkit.recipe import builtin_recipes, load_recipe

    table = Table("recipe", "description")
    for name in sorted(builtin_recipes()):
        try:
            table.add_row(name, load_recipe(name).description)
        except NstkitError as exc:
            table.add_row(name, f"[red]invalid: {exc}[/red]")
    console.print(table)


@recipes_app.command("show")
def recipes_show(
    recipe: Annotated[str, typer.Argument(help="A built-in recipe name or a YAML file.")],
    sets: Sets = None,
) -> None:
    """Print RECIPE resolved (extends and --set applied, defaults filled in) as YAML."""
    resolved = _load(recipe, sets or [])
    console.print(resolved.to_yaml(), highlight=False, markup=False, end="")


@app.command()
def validate(
    recipes: Annotated[list[str], typer.Argument(help="Recipe names or YAML files.")],
    sets: Sets = None,
) -> None:
    """Check recipes; report every problem with its file and key path (exit code 2)."""
    from nstkit.errors import RecipeError
    from nstkit.recipe import load_recipe

    problems: list[str] = []
    for recipe in recipes:
        try:
            resolved = load_recipe(recipe, sets or [])
        except RecipeError as exc:
            problems += exc.problems
            continue
        console.print(f"{resolved.source}: ok ({resolved.name}, hash {resolved.hash[:12]})",
                      highlight=False)
    if problems:
        _fail(RecipeError(problems))
