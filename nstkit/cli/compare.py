"""``nstkit compare``: recipes side by side on the same pairs, judged the same way."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Column, Table

from nstkit.cli.common import check_device, console, err, fail, host, load, prepare_out
from nstkit.cli.options import (
    Address,
    Content,
    Device,
    Engine,
    Iterations,
    Masks,
    Out,
    Overwrite,
    Quiet,
    Recursive,
    Regions,
    Seed,
    Sets,
    Size,
    Strength,
    Style,
    overrides,
)
from nstkit.errors import NstkitError

if TYPE_CHECKING:  # imported by the command itself: torch, matplotlib and VGG19 load slowly
    from nstkit.compare import Comparison, Variant
    from nstkit.runner.execute import Outcome


def register(app: typer.Typer) -> None:
    app.command()(compare)


def compare(
    recipes: Annotated[list[str], typer.Argument(
        help="Recipes to compare (built-in names or YAML files; plugins may take others, such "
             "as nstkit-fast's model files); one is enough with --sweep.")],
    content: Content,
    style: Style,
    out: Out,
    sweep: Annotated[str | None, typer.Option(
        help="Compare across the values of one key: --sweep extractor.pooling=max,avg")] = None,
    reuse: Annotated[list[Path] | None, typer.Option(
        help="A `nstkit run` output folder whose finished outputs (same recipe and inputs, "
             "per its manifest) are used instead of recomputed (repeatable).")] = None,
    recursive: Recursive = False,
    device: Device = "auto",
    size: Size = None,
    iterations: Iterations = None,
    seed: Seed = None,
    strength: Strength = None,
    masks: Masks = None,
    regions: Regions = None,
    sets: Sets = None,
    judge_size: Annotated[int, typer.Option(
        min=16, help="Longest side at which outputs are judged.")] = 512,
    thumb: Annotated[int, typer.Option(min=32, help="Cell size of grid.png in pixels.")] = 192,
    overwrite: Overwrite = False,
    engine: Engine = "local",
    address: Address = None,
    quiet: Quiet = False,
) -> None:
    """Run each recipe on the same content x style pairs and write OUT/grid.png, losses.png,
    results.csv, results.json and report.html.

    Each variant runs in OUT/runs/<variant>/ like `nstkit run` (resumable). Exit codes: 0 all
    done, 1 some jobs failed, 2 bad usage or recipe, 130 interrupted.
    """
    from nstkit.compare import plan_variants
    from nstkit.runner.plan import find_images

    try:
        variants = plan_variants(recipes, overrides(sets, size=size, iterations=iterations,
                                                    seed=seed, strength=strength, masks=masks,
                                                    regions=regions), sweep, load,
                                 host().compare_variant)
        contents = [p for path in content for p in find_images(path, recursive, "content", out)]
        styles = [p for path in style for p in find_images(path, recursive, "style", out)]
        missing = [str(path) for path in reuse or [] if not path.is_dir()]
        if missing:
            raise NstkitError(f"--reuse folder(s) not found: {', '.join(missing)}")
    except NstkitError as exc:
        fail(exc)
    check_device(device, engine)
    prepare_out(out)
    command = shlex.join(["nstkit", "compare", *recipes, *_options(
        content=content, style=style, out=[out], sweep=sweep, size=size,
        iterations=iterations, seed=seed, masks=masks, region=regions or [], set=sets or [],
        device=device)])
    comparison = _collect(variants, contents, styles, out, device, reuse or [], overwrite,
                          quiet, command, engine, address)
    # the judge runs here: a cluster engine's --device names the workers' device
    _publish(comparison, judge_size, device if engine == "local" else "auto", thumb)


def _options(**values: Any) -> list[str]:
    args: list[str] = []
    for key, value in values.items():
        for item in value if isinstance(value, list) else [value]:
            if item is not None and not (key == "device" and item == "auto"):
                args += [f"--{key}", str(item)]
    return args


def _collect(variants: list[Variant], contents: list[Path], styles: list[Path], out: Path,
             device: str, reuse: list[Path], overwrite: bool, quiet: bool, command: str,
             engine: str = "local", address: str | None = None) -> Comparison:
    from nstkit.compare import Collector, Comparison
    from nstkit.runner.display import BatchDisplay
    from nstkit.runner.execute import InputHashes, RunOptions

    plugins, hashes = host(), InputHashes()
    try:
        executor = plugins.executors.get(engine)(address=address)
    except NstkitError as exc:
        fail(exc)
    display = BatchDisplay(err, live=err.is_terminal and not quiet)
    collector = Collector(out, RunOptions(out, device), plugins,
                          lambda v, o: _report(display, v, o), reuse, overwrite, executor,
                          display)
    planned = {v.label: collector.plan(v, contents, styles) for v in variants}
    try:
        pending = {v.label: collector.pending(v, planned[v.label], hashes) for v in variants}
    except OSError as exc:
        fail(NstkitError(f"reading an input failed: {exc}"))
    todo = sum(len(jobs) for jobs, _ in pending.values())
    display.start(todo, sum(len(planned[label]) for label in planned) - todo)
    try:
        with plugins.added(display, name="nstkit.runner.display"):
            for variant in variants:
                jobs = pending[variant.label][0]
                if jobs and collector.run(variant, jobs).interrupted:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        err.print("interrupted: finished outputs are kept; rerun the same command to resume")
        raise typer.Exit(130) from None
    except NstkitError as exc:
        fail(exc)
    finally:
        display.close()
    entries = [e for v in variants
               for e in collector.entries(v, planned[v.label], pending[v.label][1])]
    pairs = [(c, s) for c in contents for s in styles]
    return Comparison(out, variants, pairs, entries, [], command)


def _report(display: Any, variant: Variant, outcome: Outcome) -> None:
    display.job_finished(outcome.job.output, outcome.status, outcome.seconds,
                         outcome.error or "", label=f"{variant.label}: {outcome.job.output}")


def _publish(comparison: Comparison, judge_size: int, device: str, thumb: int) -> None:
    from nstkit.compare import publish
    from nstkit.compare.results import judge_entries, summarise
    from nstkit.components import build_extractor, resolve_device
    from nstkit.judge import Judge

    done = sum(e.status == "done" for e in comparison.entries)
    err.print(f"judging {done} output(s) at {judge_size} px with VGG19 (original weights)")
    try:
        dev = resolve_device(device)  # the judge's VGG19 is shared with recipes that use it
        vgg = build_extractor(host(), "vgg19", dev, pooling="max", weights="original")
        judge = Judge(vgg, size=judge_size, device=dev)
        comparison.scores = judge_entries(comparison.entries, judge)
        paths = publish(comparison, judge, thumb)
    except NstkitError as exc:
        fail(exc)
    except KeyboardInterrupt:
        err.print("interrupted while judging: the outputs are kept; rerun to publish")
        raise typer.Exit(130) from None
    rows = comparison.rows()
    _print_tables(rows, summarise(rows))
    for name, path in paths.items():
        console.print(f"{name}: {path}", highlight=False)
    raise typer.Exit(1 if any(row["status"] != "done" for row in rows) else 0)


def _number(value: Any, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _table(*headers: str, title: str, numbers: int = 0) -> Table:
    """A table whose cells wrap rather than lose characters when the terminal is narrow; the
    last ``numbers`` columns hold numbers, kept whole on one line."""
    split = len(headers) - numbers
    return Table(*(Column(header, overflow="fold") for header in headers[:split]),
                 *(Column(header, overflow="fold", min_width=5, justify="right")
                   for header in headers[split:]), title=title)


def _print_tables(rows: list[dict[str, Any]], summary: list[dict[str, Any]]) -> None:
    from nstkit.compare.results import pairwise
    from nstkit.judge import METRIC_LABELS, METRICS

    labels = [METRIC_LABELS[m] for m in METRICS]
    jobs = _table("variant", "content", "style", "status", "time (s)", *labels,
                  numbers=len(labels) + 1,
                  title="nstkit compare: every job (judged distances, lower is closer)")
    for row in rows:
        jobs.add_row(row["variant"], Path(row["content"]).name, Path(row["style"]).name,
                     row["status"] + (" (reused)" if row["reused"] else ""),
                     _number(row["wall_time"], 1),
                     *(_number(row.get(f"judged_{m}"), 1 if m == "palette" else 3)
                       for m in METRICS))
    console.print(jobs)
    means = _table("variant", "done", "failed", "time (s)", "rank", "dominates", *labels,
                   numbers=len(labels),
                   title="per variant: mean time and mean judged distances (lower is closer); "
                   "rank: Pareto rank over the six distances, 0 = dominated by no other variant")
    for item in summary:
        rank = item.get("pareto_rank")
        means.add_row(item["variant"], str(item["done"]), str(item["failed"]),
                      _number(item["mean_wall_time"], 1), "" if rank is None else str(rank),
                      ", ".join(item.get("dominates") or []),
                      *(_number(item.get(f"mean_judged_{m}"), 1 if m == "palette" else 3)
                        for m in METRICS))
    console.print(means)
    pairs = pairwise(summary)
    if pairs:
        wins = {(p["variant"], p["versus"]): p["style_wins"] for p in pairs}
        names = [item["variant"] for item in summary]
        table = _table("A \\ B", *names, title=f"style distances (of {pairs[0]['style_metrics']}) "
                      "on which A beats B while no worse on content; - when worse on content")
        for a in names:
            table.add_row(a, *("" if a == b else "-" if wins[(a, b)] is None
                               else str(wins[(a, b)]) for b in names))
        console.print(table)
