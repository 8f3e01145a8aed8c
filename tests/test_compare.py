"""``nstkit compare``: variants, sweeps, reuse of earlier outputs and every file it writes."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from nstkit.cli import app
from nstkit.compare import Comparison, publish
from nstkit.compare.collect import Collector, Entry, find_reusable
from nstkit.compare.curves import Curve, read_curve
from nstkit.compare.figures import _captions
from nstkit.compare.pareto import dominated, dominates, pareto_ranks, style_wins
from nstkit.compare.results import judge_entries, make_rows, pairwise, summarise
from nstkit.compare.variants import Variant, parse_sweep, plan_variants, split_values
from nstkit.errors import NstkitError
from nstkit.executors import RunRequest, tell_step
from nstkit.job import JobInfo
from nstkit.judge import METRICS, Judge, Scores
from nstkit.recipe import load_recipe
from nstkit.runner.execute import InputHashes, Outcome, RunOptions, RunSummary
from nstkit.runner.plan import Job, plan_jobs

runner = CliRunner()
FAST = ["--size", "32", "--iterations", "2", "--judge-size", "32", "--thumb", "48", "--quiet"]
FILES = ("grid.png", "losses.png", "tradeoff.png", "results.csv", "results.json",
         "report.html")


def compare(tiny: Path, out: Path, *args: str, content: Path | None = None):
    argv = ["compare", *args, "--content", content or tiny / "content",
            "--style", tiny / "style" / "starry_night.png", "--out", out, *FAST]
    return runner.invoke(app, [str(a) for a in argv])


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def test_split_values_keeps_bracketed_lists_whole() -> None:
    assert split_values("1e-3, [relu1_1, relu2_1],x") == ["1e-3", "[relu1_1, relu2_1]", "x"]


@pytest.mark.parametrize("text", ["seed", "seed=1", "=1,2", "seed=1,,2", "seed=1,1"])
def test_bad_sweeps_are_refused(text: str) -> None:
    with pytest.raises(NstkitError, match="sweep"):
        parse_sweep(text)


def test_plan_variants_labels_folders_and_sweep_sets() -> None:
    variants = plan_variants(["gatys"], ["size=64"], "losses.1.weight=1e-2,1e-4",
                             lambda ref, sets: load_recipe(ref, sets))
    assert [v.label for v in variants] == ["gatys losses.1.weight=1e-2",
                                           "gatys losses.1.weight=1e-4"]
    assert [v.recipe.data["losses"][1]["weight"] for v in variants] == [1e-2, 1e-4]
    assert {v.recipe.data["size"] for v in variants} == {64}
    assert [v.folder for v in variants] == ["gatys_losses.1.weight=1e-2",
                                            "gatys_losses.1.weight=1e-4"]
    assert all(re.fullmatch(r"[\w.=+-]+", v.folder) for v in variants)


@pytest.mark.parametrize(("recipes", "sweep", "message"), [
    ([], None, "at least one"), (["gatys"], None, "two or more"),
    (["gatys", "gatys"], None, "named twice")])
def test_plan_variants_refuses_what_cannot_be_compared(recipes, sweep, message) -> None:
    with pytest.raises(NstkitError, match=message):
        plan_variants(recipes, [], sweep, lambda ref, sets: load_recipe(ref, sets))


@pytest.fixture(scope="module")
def compared(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``nstkit compare gatys improved`` on the tiny images: (folder, terminal output)."""
    out = tmp_path_factory.mktemp("compared") / "cmp"
    result = compare(tiny, out, "gatys", "improved")
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.mark.slow
def test_compare_two_recipes_writes_every_file(compared: tuple[Path, str]) -> None:
    out, output = compared
    assert all((out / name).is_file() for name in FILES)
    data = results(out)
    rows = data["rows"]
    assert [(r["variant"], Path(r["content"]).name) for r in rows] == [
        ("gatys", "chelsea.png"), ("gatys", "coffee.png"),
        ("improved", "chelsea.png"), ("improved", "coffee.png")]
    for row in rows:
        assert row["status"] == "done"
        assert row["iterations"] == 2
        assert row["wall_time"] > 0
        assert 0 < row["judged_content"] < 2
        assert 0 < row["judged_style"] < 2
        assert all(row[f"judged_{m}"] > 0 for m in METRICS)
        assert row["loss:total"] > 0
        assert (out / row["output"]).is_file()
    assert "loss:shifted_gram" in rows[2]
    assert "loss:shifted_gram" not in rows[0]
    assert data["judge"]["content_layer"] == "relu4_2"
    assert [s["done"] for s in data["summary"]] == [2, 2]
    assert {s["pareto_rank"] for s in data["summary"]} <= {0, 1}
    assert len(data["pairwise"]) == 2
    with (out / "results.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [r["variant"] for r in table] == ["gatys", "gatys", "improved", "improved"]
    assert float(table[0]["judged_style"]) == pytest.approx(rows[0]["judged_style"])
    # 2 pairs x (content, style, 2 recipes) cells of 48 px
    grid = Image.open(out / "grid.png")
    assert grid.width == 8 + 4 * (48 + 8)
    curve = read_curve(out / "runs" / "gatys", "chelsea__starry_night__gatys.png")
    assert curve is not None
    assert curve.steps == [0, 1, 2]
    assert curve.losses["total"][-1] < curve.losses["total"][0]
    assert curve.losses["total"][-1] == pytest.approx(rows[0]["loss:total"])
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 3  # grid, trade-off, losses
    assert "shifted_gram" in page  # improved's resolved YAML
    assert "per variant" in output
    assert "improved" in output


@pytest.mark.slow
def test_a_rerun_resumes_and_rejudges(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    assert compare(tiny, out, "gatys", "content-reconstruction").exit_code == 0
    first = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.png")}
    (out / "results.json").unlink()
    again = compare(tiny, out, "gatys", "content-reconstruction")
    assert again.exit_code == 0, again.output
    assert "4 job(s) already done" in again.output
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.png")} == first
    assert [r["status"] for r in results(out)["rows"]] == ["done"] * 4


@pytest.fixture(scope="module")
def earlier_run(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `nstkit run gatys` over the tiny content images and starry_night, as compare runs it."""
    earlier = tmp_path_factory.mktemp("earlier")
    run = runner.invoke(app, [str(a) for a in (
        "run", "gatys", "--content", tiny / "content", "--style", tiny / "style" /
        "starry_night.png", "--out", earlier, "--size", "32", "--iterations", "2", "--quiet")])
    assert run.exit_code == 0, run.output
    return earlier


@pytest.mark.slow
def test_outputs_of_nstkit_run_are_reused(tiny: Path, tmp_path: Path, earlier_run: Path) -> None:
    out = tmp_path / "cmp"
    result = compare(tiny, out, "gatys", "content-reconstruction", "--reuse", earlier_run)
    assert result.exit_code == 0, result.output
    rows = results(out)["rows"]
    assert [r["reused"] for r in rows] == [True, True, False, False]
    assert rows[0]["output"] == str(earlier_run / "chelsea__starry_night__gatys.png")
    assert rows[0]["judged_style"] > 0
    assert not (out / "runs" / "gatys").exists()


@pytest.mark.slow
@pytest.mark.parametrize(("sets", "expected"), [
    ([], 2), (["optimizer.iterations=3"], 0), (["seed=7"], 0)])
def test_reuse_needs_the_same_recipe(tiny: Path, earlier_run: Path, sets: list[str],
                                     expected: int) -> None:
    recipe = load_recipe("gatys", ["size=32", "optimizer.iterations=2", *sets])
    variant = Variant("gatys", recipe, "gatys")
    jobs = plan_jobs(sorted((tiny / "content").iterdir()), [tiny / "style" / "starry_night.png"],
                     "gatys", "png")
    assert len(find_reusable(jobs, variant, [earlier_run], InputHashes())) == expected


@pytest.mark.slow
def test_sweep_compares_one_recipe_across_values(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    result = compare(tiny, out, "gatys", "--sweep", "extractor.pooling=max,avg")
    assert result.exit_code == 0, result.output
    data = results(out)
    assert [s["variant"] for s in data["summary"]] == [
        "gatys extractor.pooling=max", "gatys extractor.pooling=avg"]
    assert [data["recipes"][v]["data"]["extractor"]["pooling"]
            for v in ("gatys extractor.pooling=max", "gatys extractor.pooling=avg")] == [
        "max", "avg"]
    assert sorted(p.name for p in (out / "runs").iterdir()) == [
        "gatys_extractor.pooling=avg", "gatys_extractor.pooling=max"]


@pytest.mark.slow
def test_a_failed_job_is_reported_and_the_rest_published(tiny: Path, tmp_path: Path) -> None:
    content = tmp_path / "content"
    shutil.copytree(tiny / "content", content)
    (content / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "cmp"
    result = compare(tiny, out, "gatys", "content-reconstruction", content=content)
    assert result.exit_code == 1, result.output
    rows = results(out)["rows"]
    assert [r["status"] for r in rows if "broken" in r["content"]] == ["failed", "failed"]
    assert all(r["judged_style"] is None for r in rows if r["status"] == "failed")
    assert sum(r["status"] == "done" for r in rows) == 4
    assert all((out / name).is_file() for name in FILES)


@pytest.mark.parametrize(("args", "message"), [
    (["gatys"], "two or more recipes"),
    (["gatys", "nope"], "nope"),
    (["gatys", "--sweep", "seed"], "--sweep must be"),
    (["gatys", "improved", "--reuse", "no-such-folder"], "--reuse folder(s) not found")])
def test_usage_errors_exit_2(tiny: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = compare(tiny, tmp_path / "cmp", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "cmp" / "results.json").exists()


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing in CI: .ci/run installs it with apt-get")
        pytest.skip("Chromium not installed (Debian: apt-get install chromium)")
    return found


def headless(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    return subprocess.run([chromium(), *flags, *args], capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.mark.slow
def test_report_renders_in_headless_chromium(compared: tuple[Path, str], tmp_path: Path) -> None:
    out, _ = compared
    shot = tmp_path / "report.png"
    page = (out / "report.html").as_uri()
    headless(tmp_path, f"--screenshot={shot}", "--window-size=1200,1600", page)
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 1600)
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None
    assert len(colours) > 500  # photographs, not a blank or text-only page
    # the page as the browser built it: every image decoded to its natural size
    probe = tmp_path / "probe.html"
    probe.write_text((out / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    dom = headless(tmp_path, "--dump-dom", "--virtual-time-budget=5000", probe.as_uri()).stdout
    sizes = dict(re.findall(r"(\w+):(\d+x\d+)", re.search(r'data-natural="([^"]*)"', dom)[1]))
    assert sizes == {name: "{}x{}".format(*Image.open(out / f"{name}.png").size)
                     for name in ("grid", "tradeoff", "losses")}


PROBE = """<script>
window.addEventListener("load", () => document.body.setAttribute("data-natural",
  Array.from(document.images).map(i => i.id + ":" + i.naturalWidth + "x" + i.naturalHeight)
    .join(" ")));
</script>"""


def test_sweep_over_layer_lists() -> None:
    variants = plan_variants(["content-reconstruction"], [],
                             "losses.0.layers=[relu1_1],[relu2_1, relu3_1]",
                             lambda ref, sets: load_recipe(ref, sets))
    assert [v.recipe.data["losses"][0]["layers"] for v in variants] == [
        ["relu1_1"], ["relu2_1", "relu3_1"]]
    assert [v.folder for v in variants] == ["content-reconstruction_losses.0.layers=_relu1_1",
                                            "content-reconstruction_losses.0.layers=_relu2_1_relu3_1"]


def test_an_output_that_cannot_be_judged_keeps_its_row(tmp_path: Path) -> None:
    recipe = load_recipe("gatys")
    job = Job(tmp_path / "c.png", tmp_path / "s.png", "c__s__gatys.png")
    entry = Entry(Variant("gatys", recipe, "gatys"), job, tmp_path, {"status": "done"})

    def unreadable(*args, **kwargs):
        raise OSError("cannot identify image file")

    assert judge_entries([entry], unreadable) == [None]
    row = make_rows([entry], [None], tmp_path)[0]
    assert row["status"] == "done"
    assert row["judged_style"] is None
    assert row["error"] == "OSError: cannot identify image file"


class RemoteLike:
    """A fake engine that runs nothing: it tells each job's progress as the Ray engine relays
    a remote job's (a start, then every step with the worker's seconds) and reports it done."""

    def __init__(self) -> None:
        self.requests: list[RunRequest] = []

    def run(self, request: RunRequest) -> RunSummary:
        self.requests.append(request)
        summary = RunSummary()
        for job in request.jobs:
            info = JobInfo(job.output, 2, "cuda:0", (32, 21), {"outputs": [job.output]})
            request.progress.job_started(info)
            for step, seconds in ((1, 0.5), (2, 0.75)):
                tell_step(request.progress, info, step, {"total": 4.0 - step}, seconds)
            outcome = Outcome(job, "done", 1.0, losses={"total": 1.5})
            summary.outcomes.append(outcome)
            request.report(outcome)
        return summary


class Steps:
    """A progress sink like the display: the steps it is told."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, int]] = []

    def job_started(self, job: JobInfo) -> None:
        self.steps.append((job.name, 0))

    def job_step(self, job: JobInfo, step: int, losses) -> None:
        self.steps.append((job.name, step))


def test_the_collector_runs_through_the_executor_it_is_given(tiny: Path, tmp_path: Path,
                                                             host) -> None:
    recipe = load_recipe("gatys", ["size=32", "optimizer.iterations=2"])
    variant = Variant("gatys", recipe, "gatys")
    engine, display, reported = RemoteLike(), Steps(), []
    collector = Collector(tmp_path, RunOptions(tmp_path, "cpu", batch_size=2), host,
                          lambda v, o: reported.append((v.label, o.job.output, o.status)),
                          executor=engine, progress=display)
    jobs = collector.plan(variant, [tiny / "content" / "chelsea.png"],
                          sorted((tiny / "style").iterdir()))
    summary = collector.run(variant, jobs)
    [request] = engine.requests
    assert request.jobs == jobs
    assert request.recipe is recipe
    assert request.host is host
    assert (request.options.out, request.options.device, request.options.batch_size) == (
        tmp_path / "runs" / "gatys", "cpu", 2)
    assert summary.count("done") == 2
    assert reported == [("gatys", job.output, "done") for job in jobs]
    assert display.steps == [(job.output, step) for job in jobs for step in (0, 1, 2)]
    for job in jobs:  # the curves come from the relayed steps and the outcome
        curve = read_curve(tmp_path / "runs" / "gatys", job.output)
        assert curve == Curve([0, 1, 2], [0.0, 0.5, 0.75], {"total": [3.0, 2.0, 1.5]})
    assert not list((tmp_path / "runs" / "gatys").glob("*.png"))  # nothing ran here
    assert not host.has("nstkit.compare.curves.gatys")


# --- judged distances: every metric in every file, Pareto ranks --------------------------------


def test_pareto_ranks_on_hand_made_rows() -> None:
    rows = [{"a": 1, "b": 1}, {"a": 2, "b": 2}, {"a": 0.5, "b": 3}, {"a": 1, "b": 1},
            {"a": 3, "b": 3}, {"a": None, "b": 0}]
    assert pareto_ranks(rows, ["a", "b"]) == [0, 1, 0, 0, 2, None]
    assert dominated(rows, ["a", "b"]) == [[1, 4], [4], [4], [1, 4], [], []]
    # one metric: a plain sort, ties sharing a rank
    assert pareto_ranks(rows, ["b"]) == [1, 2, 3, 1, 3, 0]
    assert pareto_ranks([], ["a"]) == []


def test_dominance_needs_no_worse_everywhere_and_better_somewhere() -> None:
    a, b = {"x": 1.0, "y": 2.0}, {"x": 1.0, "y": 3.0}
    assert dominates(a, b, ["x", "y"])
    assert not dominates(b, a, ["x", "y"])
    assert not dominates(a, a, ["x", "y"])  # a tie dominates nothing
    assert not dominates(a, {"x": 0.5, "y": 3.0}, ["x", "y"])  # a trade-off
    assert not dominates(a, {"x": None, "y": 3.0}, ["x", "y"])


def test_style_wins_count_only_when_no_worse_on_content() -> None:
    a = {"c": 0.5, "s1": 1, "s2": 5, "s3": 2}
    b = {"c": 0.5, "s1": 2, "s2": 4, "s3": 3}
    assert style_wins(a, b, ["c"], ["s1", "s2", "s3"]) == 2
    assert style_wins(b, a, ["c"], ["s1", "s2", "s3"]) == 1
    assert style_wins({**a, "c": 0.6}, b, ["c"], ["s1", "s2", "s3"]) is None
    assert style_wins(a, {**b, "s1": None}, ["c"], ["s1", "s2", "s3"]) is None


def scores(content: float, style: float, **others: float) -> Scores:
    values = dict.fromkeys(METRICS, 0.5) | {"content": content, "style": style} | others
    return Scores(**values)


def test_compare_files_have_every_judged_distance_and_the_ranks(tmp_path: Path,
                                                                monkeypatch) -> None:
    """publish() on hand-made entries and scores: no recipe runs, no network."""
    import importlib

    from nstkit.compare.tradeoff import tradeoff_figure

    publishing = importlib.import_module("nstkit.compare.publish")

    plotted = []
    real = publishing.tradeoff_png
    monkeypatch.setattr(publishing, "tradeoff_png", lambda rows, sweeps: (
        plotted.append(tradeoff_figure(rows, sweeps)), real(rows, sweeps))[1])
    images = tmp_path / "in"
    images.mkdir()
    for name, colour in (("c.png", (200, 10, 10)), ("s.png", (10, 10, 200))):
        Image.new("RGB", (24, 16), colour).save(images / name)
    recipe = load_recipe("gatys")
    labels = ("good", "worse", "other")
    variants = [Variant(label, recipe, label) for label in labels]
    job = Job(images / "c.png", images / "s.png", "c__s.png")
    entries = []
    for variant in variants:
        folder = tmp_path / "runs" / variant.folder
        folder.mkdir(parents=True)
        Image.new("RGB", (24, 16), (90, 10, 120)).save(folder / job.output)
        entries.append(Entry(variant, job, folder, {"status": "done", "wall_time": 1.5,
                                                    "iterations": 2, "losses": {"total": 1.0}}))
    judged = [scores(0.2, 0.3, palette=12.0), scores(0.3, 0.4, w2=0.6, palette=12.0),
              scores(0.1, 0.9, w2=0.1, palette=20.0)]
    comparison = Comparison(tmp_path, variants, [(job.content, job.style)], entries, judged,
                            "nstkit compare good worse other")
    judge = Judge(lambda image, layers: {}, size=32)
    paths = publish(comparison, judge, thumb=48)

    data = json.loads(paths["json"].read_text())
    for row, score in zip(data["rows"], judged, strict=True):
        assert {f"judged_{m}": row[f"judged_{m}"] for m in METRICS} == {
            f"judged_{m}": pytest.approx(v) for m, v in score.as_dict().items()}
    summary = {item["variant"]: item for item in data["summary"]}
    assert summary["other"]["mean_judged_palette"] == 20.0
    assert summary["other"]["mean_judged_w2"] == 0.1
    assert {label: summary[label]["pareto_rank"] for label in labels} == {
        "good": 0, "worse": 1, "other": 0}
    assert summary["good"]["dominates"] == ["worse"]
    assert summary["other"]["dominates"] == []
    wins = {(p["variant"], p["versus"]): p["style_wins"] for p in data["pairwise"]}
    assert wins[("good", "worse")] == 2  # Gram and W2 better, sliced and palette equal
    assert wins[("worse", "good")] is None  # worse on content
    assert wins[("other", "good")] == 1  # better on content; on the style side only W2
    assert data["judge"]["sliced_directions"] == 64
    with paths["csv"].open() as handle:
        reader = csv.DictReader(handle)
        assert [f"judged_{m}" for m in METRICS] == [
            name for name in reader.fieldnames or [] if name.startswith("judged_")]
        assert float(next(reader)["judged_palette"]) == 12.0
    page = paths["report"].read_text()
    for text in ("Pareto rank", "mean 1-SSIM", "mean palette ΔE", "sliced W2", 'id="pairwise"'):
        assert text in page
    assert Image.open(paths["grid"]).size == (8 + 5 * (48 + 8), 18 + 8 + 48 + 2 * 18 + 8)
    assert Image.open(paths["tradeoff"]).size == (700, 550)
    assert artists(plotted[0], "jobs:") == {  # the figure's points are results.json's
        row["variant"]: [(row["judged_content"], row["judged_style"])] for row in data["rows"]}
    assert 'id="tradeoff"' in page


def artists(figure, prefix: str) -> dict[str, list[tuple[float, float]]]:
    """The data of the figure's scatters and lines whose gid starts with ``prefix``."""
    axis = figure.axes[0]
    found = {}
    for artist in [*axis.collections, *axis.lines]:
        gid = artist.get_gid() or ""
        if gid.startswith(prefix):
            data = (artist.get_offsets() if hasattr(artist, "get_offsets")
                    else list(zip(*artist.get_data(), strict=True)))
            found[gid.removeprefix(prefix)] = [tuple(map(float, xy)) for xy in data]
    return found


def test_tradeoff_points_are_the_judged_rows_and_the_front_the_undominated_means() -> None:
    from nstkit.compare.tradeoff import tradeoff_figure

    def row(variant, content, x, y):
        return {"variant": variant, "content": content, "style": "s.png",
                "judged_content": x, "judged_style": y}

    rows = [row("fast strength=0.5", "a", 0.2, 0.6), row("fast strength=0.5", "b", 0.4, 0.8),
            row("fast strength=2", "a", 0.6, 0.3), row("fast strength=2", "b", 0.8, 0.5),
            row("gatys", "a", 0.9, 0.9), row("gatys", "b", None, None)]
    figure = tradeoff_figure(rows, [["fast strength=0.5", "fast strength=2"]])
    assert artists(figure, "jobs:") == {"fast strength=0.5": [(0.2, 0.6), (0.4, 0.8)],
                                        "fast strength=2": [(0.6, 0.3), (0.8, 0.5)],
                                        "gatys": [(0.9, 0.9)]}
    assert artists(figure, "mean:") == {"fast strength=0.5": [pytest.approx((0.3, 0.7))],
                                        "fast strength=2": [pytest.approx((0.7, 0.4))],
                                        "gatys": [(0.9, 0.9)]}
    assert artists(figure, "front")[""] == [pytest.approx((0.3, 0.7)), pytest.approx((0.7, 0.4))]
    assert artists(figure, "sweep:")["fast strength=0.5"] == [pytest.approx((0.3, 0.7)),
                                                             pytest.approx((0.7, 0.4))]


def test_the_summary_ranks_only_judged_variants() -> None:
    rows = [{"variant": "a", "status": "failed", "wall_time": None},
            {"variant": "b", "status": "done", "wall_time": 1.0,
             **{f"judged_{m}": 0.5 for m in METRICS}}]
    summary = summarise(rows)
    assert [(s["variant"], s["pareto_rank"], s["mean_judged_w2"]) for s in summary] == [
        ("a", None, None), ("b", 0, 0.5)]
    assert [p["style_wins"] for p in pairwise(summary)] == [None, None]


def test_captions_show_three_distances() -> None:
    entry = Entry(Variant("gatys", load_recipe("gatys"), "gatys"),
                  Job(Path("c.png"), Path("s.png"), "o.png"), Path(), {"status": "done",
                                                                        "wall_time": 2.0})
    assert _captions(entry, scores(0.1234, 0.5, w2=0.25)) == [
        "content 0.123  Gram 0.500", "W2 0.250  2 s"]
