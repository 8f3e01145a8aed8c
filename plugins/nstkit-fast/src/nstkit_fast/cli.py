"""``nstkit train`` (a network from a recipe's losses) and ``nstkit apply`` (a network over
folders of photos, with ``nstkit run``'s batch semantics).

Imports typer and light parts of nstkit only: torch is imported when a command runs. The
options shared with ``nstkit run`` are the same declarations (:mod:`nstkit.cli.options`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
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
    Device,
    DryRun,
    Engine,
    FailFast,
    Overwrite,
    Quiet,
    RecipeRef,
    Recursive,
    Seed,
    Sets,
    Shard,
    Strength,
    overrides,
    shard_option,
)
from nstkit.errors import NstkitError

if TYPE_CHECKING:
    from nstkit.recipe import Recipe
    from nstkit.runner.plan import Job
    from nstkit.runner.record import RunSummary
    from nstkit_fast.batch import ApplyOptions
    from nstkit_fast.modelfile import FastModel
    from nstkit_fast.training import StepReport, TrainResult, TrainSettings

ENGINES = ("local", "ray")
Photos = Annotated[list[Path], typer.Option(
    "--content", "-c", help="Training photos: a folder (searched recursively) or a file "
                            "(repeatable).")]
ModelOut = Annotated[Path, typer.Option(
    "--out", "-o", help="The model file to write (MODEL.safetensors); its checkpoint, loss "
                        "curve and previews are written beside it.")]


def train(
    recipe: RecipeRef,
    style: Annotated[Path, typer.Option(help="The style image.")],
    content: Photos,
    out: ModelOut,
    steps: Annotated[int, typer.Option(
        min=1, help="Adam steps in all (a resumed run counts those done; raise it to train "
                    "on).")] = 2000,
    batch_size: Annotated[int, typer.Option(min=1, help="Crops per step.")] = 4,
    crop: Annotated[int, typer.Option(min=16, help="Side of the random square crops.")] = 256,
    size: Annotated[int | None, typer.Option(
        min=16, help="Longest side the photos are resized to before cropping (default: the "
                     "recipe's size, the scale the network will be applied at).")] = None,
    style_size: Annotated[int | None, typer.Option(
        min=16, help="Longest side of the style image (default: --size times the recipe's "
                     "style_scale).")] = None,
    lr: Annotated[float, typer.Option(min=0, help="Adam's learning rate.")] = 1e-3,
    width: Annotated[int, typer.Option(
        min=1, max=512, help="Channels of the network's first layer (Johnson et al.: 32).")
    ] = 32,
    blocks: Annotated[int, typer.Option(
        min=1, max=32, help="Residual blocks (Johnson et al.: 5).")] = 5,
    seed: Seed = None,
    strength: Strength = None,
    sets: Sets = None,
    device: Device = "auto",
    checkpoint_every: Annotated[int, typer.Option(
        min=0, help="Steps between checkpoints (and model files); 0: at the end and on "
                    "Ctrl-C only.")] = 200,
    preview_every: Annotated[int, typer.Option(
        min=0, help="Steps between preview images in MODEL.previews/ (0: none).")] = 0,
    preview: Annotated[Path | None, typer.Option(
        help="The photo the previews show (default: the first training photo).")] = None,
    minutes: Annotated[float | None, typer.Option(
        min=0, help="Stop after this much training time (a checkpoint and the model are "
                    "written; rerun to go on).")] = None,
    restart: Annotated[bool, typer.Option(help="Ignore an existing checkpoint.")] = False,
    quiet: Quiet = False,
) -> None:
    """Train a fast style transfer network with RECIPE's loss terms and weights.

    Writes MODEL (safetensors: the weights, the recipe, the style's sha256, the network's
    settings, the versions), MODEL.checkpoint.safetensors (resumed by a rerun after Ctrl-C or
    a kill), MODEL.losses.png and, with --preview-every, MODEL.previews/. Exit codes: 0
    trained, 2 bad usage or recipe, 130 interrupted (resumable).
    """
    from nstkit.runner.plan import find_images
    from nstkit_fast.network import NetworkSettings
    from nstkit_fast.training import TrainSettings

    resolved = load(recipe, overrides(sets, seed=seed, strength=strength))
    check_device(device)
    if out.suffix != ".safetensors":
        fail(NstkitError(f"--out {str(out)!r}: a model file ends in .safetensors"))
    try:
        photos = [p for path in content for p in find_images(path, True, "content")]
        if not style.is_file():
            raise NstkitError(f"--style {str(style)!r} is not a file")
    except NstkitError as exc:
        fail(exc)
    settings = TrainSettings(
        steps=steps, batch_size=batch_size, crop=crop, size=size, style_size=style_size,
        lr=lr, seed=resolved.config.seed or 0, network=NetworkSettings(width, blocks),
        checkpoint_every=checkpoint_every, preview_every=preview_every,
        max_seconds=None if minutes is None else minutes * 60, device=device)
    out.parent.mkdir(parents=True, exist_ok=True)
    load_extractor(resolved, device)
    result = _run_training(resolved, style, photos, out, settings, restart, preview, quiet)
    _print_training(result)


def _progress_line(step: StepReport) -> str:
    losses = "  ".join(f"{name} {value:.4g}" for name, value in step.losses.items())
    return f"{losses}  {step.images_per_second:.1f} img/s"


def _run_training(recipe: Recipe, style: Path, photos: list[Path], out: Path,
                  settings: TrainSettings, restart: bool, preview: Path | None,
                  quiet: bool) -> TrainResult:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from nstkit_fast.training import train as train_network

    live = err.is_terminal and not quiet
    progress = Progress(TextColumn("training"), BarColumn(), TextColumn("{task.completed}/"
                        "{task.total}"), TimeRemainingColumn(), TextColumn("{task.description}"),
                        console=err, transient=True) if live else None
    task = None

    def report(step: StepReport) -> None:
        nonlocal task
        if progress is not None:
            if task is None:
                task = progress.add_task("", total=step.steps, completed=step.resumed_from)
            progress.update(task, completed=step.step, description=_progress_line(step))
        elif step.step % 50 == 0 or step.step == step.steps:
            err.print(f"step {step.step}/{step.steps}: {_progress_line(step)}",
                      highlight=False)

    if progress is not None:
        progress.start()
    try:
        result: TrainResult = train_network(recipe, style, photos, out, settings,
                                            host=host(), restart=restart, report=report,
                                            preview=preview)
    except KeyboardInterrupt:
        if progress is not None:
            progress.stop()
        err.print(f"interrupted: checkpoint written; rerun the same command to resume "
                  f"({out})", highlight=False)
        raise typer.Exit(130) from None
    except NstkitError as exc:
        if progress is not None:
            progress.stop()
        fail(exc)
    if progress is not None:
        progress.stop()
    return result


def _print_training(result: TrainResult) -> None:
    from nstkit_fast.training import side_paths

    stopped = {"steps": "done", "time": "stopped at --minutes (rerun to go on)"}
    losses = "  ".join(f"{name} {values[-1]:.4g}" for name, values in result.history.items()
                       if values)
    console.print(f"{result.steps} steps ({stopped.get(result.stopped, result.stopped)}; "
                  f"{result.steps - result.resumed_from} this run in {result.seconds:.0f} s)"
                  f": {losses}", highlight=False)
    for path, error in result.skipped_photos.items():
        console.print(f"skipped photo: {path}: {error}", highlight=False, markup=False)
    paths = side_paths(result.model)
    console.print(f"model: {result.model}", highlight=False)
    console.print(f"loss curve: {paths['curve']}", highlight=False)
    console.print(f"checkpoint: {paths['checkpoint']}", highlight=False)


def apply(
    model: Annotated[Path, typer.Argument(help="A model file written by `nstkit train`.")],
    content: Annotated[list[Path], typer.Option(
        "--content", "-c", help="Photo or folder of photos (repeatable).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    recursive: Recursive = False,
    device: Device = "auto",
    size: Annotated[int | None, typer.Option(
        min=16, help="Longest side of the outputs (default: each photo's own size).")] = None,
    batch_size: Annotated[int, typer.Option(
        min=1, help="Same-size photos stylised together.")] = 1,
    tile: Annotated[int, typer.Option(
        min=0, help="Images of more than TILE x TILE pixels go through in tiles (0: never); "
                    "out of CUDA memory, tiles half the size are tried.")] = 1024,
    preserve_colour: Annotated[Literal["luminance", "linear", "histogram"] | None, typer.Option(
        help="Keep the photo's colours: luminance (the stylised luminance with the photo's "
             "colours) or linear/histogram (the output's colours matched to the photo's).")
    ] = None,
    image_format: Annotated[Literal["png", "jpg", "webp", "tiff"] | None, typer.Option(
        "--format", help="Output format (default: the model's recipe's).")] = None,
    overwrite: Overwrite = False,
    dry_run: DryRun = False,
    shard: Shard = None,
    engine: Engine = "local",
    address: Address = None,
    fail_fast: FailFast = False,
    quiet: Quiet = False,
) -> None:
    """Stylise every photo with a trained MODEL; resumable, recorded in OUT/manifest.jsonl.

    Outputs are named PHOTO__MODEL__fast.png. Exit codes: 0 all done, 1 some photos failed,
    2 bad usage or model, 130 interrupted.
    """
    from nstkit.runner.plan import find_images, select_shard
    from nstkit_fast.batch import ApplyOptions, model_recipe, plan_apply
    from nstkit_fast.modelfile import load_model

    if engine not in ENGINES:
        fail(NstkitError(f"--engine {engine!r}: nstkit apply runs locally or on Ray "
                         f"(--engine local or ray)"))
    check_device(device, engine)
    try:
        loaded = load_model(model)
        contents = [p for path in content for p in find_images(path, recursive, "content", out)]
        shard_spec = shard_option(shard)
        fmt = image_format or loaded.recipe.get("output", {}).get("format", "png")
        options = ApplyOptions(out, device, batch_size, size, tile or None, preserve_colour,
                               fmt, fail_fast, shard_spec)
        recipe = model_recipe(loaded, options)
    except NstkitError as exc:
        fail(exc)
    planned = plan_apply(contents, model, fmt)
    jobs = select_shard(planned, *shard_spec) if shard_spec else planned
    if dry_run:
        _print_plan(jobs, recipe, options, overwrite)
        return
    prepare_out(out)
    _apply(loaded, recipe, jobs, options, overwrite, engine, address, quiet)


def _print_plan(jobs: list[Job], recipe: Recipe, options: ApplyOptions,
                overwrite: bool) -> None:
    from nstkit.runner.execute import split_done
    from nstkit.runner.record import InputHashes

    todo, done = split_done(jobs, recipe, options.out, overwrite, InputHashes())
    table = Table("content", "output", "status", title=f"{recipe.name}: {len(todo)} to do, "
                  f"{len(done)} done")
    finished = set(done)
    for job in jobs:
        table.add_row(str(job.content), str(options.out / job.output),
                      "done" if job in finished else "to do")
    console.print(table)


def _apply(model: FastModel, recipe: Recipe, jobs: list[Job], options: ApplyOptions,
           overwrite: bool, engine: str, address: str | None, quiet: bool) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from nstkit.runner.execute import split_done
    from nstkit.runner.record import InputHashes, Outcome, write_summary
    from nstkit_fast.batch import run_local, run_ray

    hashes = InputHashes()
    todo, done = split_done(jobs, recipe, options.out, overwrite, hashes)
    live = err.is_terminal and not quiet
    progress = Progress(TextColumn("apply"), BarColumn(), TextColumn("{task.completed}/"
                        "{task.total}"), TimeRemainingColumn(), TextColumn("{task.description}"),
                        console=err, transient=True) if live else None
    task = progress.add_task("", total=len(todo)) if progress is not None else None
    counts = {"done": 0, "seconds": 0.0}

    def report(outcome: Outcome) -> None:
        counts["done"] += 1
        counts["seconds"] += outcome.seconds
        if progress is not None and task is not None:
            rate = counts["done"] / max(counts["seconds"], 1e-9)
            progress.update(task, advance=1, description=f"{rate:.1f} img/s")
        if outcome.status == "failed" or not live:
            err.print(f"{outcome.status}: {outcome.job.output} ({outcome.seconds:.2f} s)"
                      + (f": {outcome.error}" if outcome.error else ""), highlight=False,
                      markup=False)

    if progress is not None:
        progress.start()
    try:
        with run_errors(options.out):
            if engine == "ray":
                summary = run_ray(model, recipe, todo, options, report, address, hashes)
            else:
                summary = run_local(model, recipe, todo, options, report, hashes)
            write_summary(options.out, summary, len(done), options.shard)
    finally:
        if progress is not None:
            progress.stop()
    _print_summary(summary, len(todo), len(done), options)
    raise typer.Exit(summary.exit_code)


def _print_summary(summary: RunSummary, planned: int, skipped: int,
                   options: ApplyOptions) -> None:
    from nstkit.runner.manifest import manifest_name

    done = [o for o in summary.outcomes if o.status == "done"]
    table = Table("done", "failed", "skipped (already done)", "not run", "s/image",
                  title=f"nstkit apply -> {options.out}"
                  + (" (interrupted)" if summary.interrupted else ""))
    finished = len(done) + summary.count("failed")
    per_image = sum(o.seconds for o in done) / len(done) if done else None
    table.add_row(str(len(done)), str(summary.count("failed")), str(skipped),
                  str(planned - finished), "" if per_image is None else f"{per_image:.3f}")
    console.print(table)
    for outcome in summary.outcomes:
        if outcome.status == "failed":
            console.print(f"failed: {outcome.job.output}: {outcome.error or ''}",
                          highlight=False, markup=False)
    console.print(f"manifest: {options.out / manifest_name(options.shard)}", highlight=False)
