"""``nstkit run``, ``recipes``, ``validate``: CliRunner tests and one real subprocess run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nstkit.hookspecs import hookimpl
from nstkit.image import load_image
from nstkit.plugins import get_host, reset_host
from nstkit.recipe import builtin_recipes, load_recipe
from nstkit.runner.manifest import file_sha256, latest_records
from nstkit.runner.plan import Job, plan_jobs, select_shard


@pytest.mark.slow
def test_run_stylises_every_pair_and_records_it(tmp_path: Path, records, run_tiny) -> None:
    out = tmp_path / "out"
    result = run_tiny(out)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["chelsea__starry_night__gatys.png", "chelsea__starry_night_gold__gatys.png",
                     "coffee__starry_night__gatys.png", "coffee__starry_night_gold__gatys.png"]
    found = records(out)
    assert [r["status"] for r in found] == ["done"] * 4
    first = found[0]
    assert first["content"]["sha256"] == file_sha256(Path(first["content"]["path"]))
    assert first["output_sha256"] == file_sha256(out / first["output"])
    assert first["recipe_data"]["size"] == 32
    assert first["recipe_data"]["optimizer"]["iterations"] == 2
    assert first["versions"]["torch"]
    assert first["weights"].startswith("original VGG19")
    assert set(first["losses"]) == {"content", "gram", "total"}
    assert max(load_image(out / first["output"]).shape[-2:]) == 32
    assert "[4/4]" in result.output
    assert json.loads((out / "summary.json").read_text())["done"] == 4


@pytest.mark.slow
def test_rerun_resumes_and_overwrite_redoes(tmp_path: Path, records, run_tiny) -> None:
    out = tmp_path / "out"
    assert run_tiny(out).exit_code == 0
    again = run_tiny(out)
    assert again.exit_code == 0
    assert "4 job(s) already done" in again.output
    assert len(records(out)) == 4  # no new work
    (out / "chelsea__starry_night_gold__gatys.png").write_bytes(b"tampered")
    assert run_tiny(out).exit_code == 0
    assert len(records(out)) == 5  # only the damaged output was redone
    assert load_image(out / "chelsea__starry_night_gold__gatys.png").shape[-1] == 32
    assert run_tiny(out, "--overwrite").exit_code == 0
    assert len(records(out)) == 9


@pytest.mark.slow
def test_a_changed_recipe_is_not_mistaken_for_done(tmp_path: Path, records, run_tiny) -> None:
    out = tmp_path / "out"
    assert run_tiny(out).exit_code == 0
    assert run_tiny(out, "--set", "losses.1.weight=0.002").exit_code == 0
    assert len(records(out)) == 8
    assert run_tiny(out, "--set", "losses.1.weight=0.002", "--save-every", "1",
                    ).exit_code == 0  # intermediate images do not change the result
    assert len(records(out)) == 8


@pytest.mark.slow
def test_an_edited_input_is_redone(tiny: Path, tmp_path: Path, invoke, records, fast) -> None:
    content = tmp_path / "content"
    shutil.copytree(tiny / "content", content)
    out = tmp_path / "out"
    args = ("run", "gatys", "--content", content, "--style",
            tiny / "style" / "starry_night_gold.png", "--out", out, *fast)
    assert invoke(*args).exit_code == 0
    shutil.copy(tiny / "style" / "starry_night.png", content / "chelsea.png")
    assert invoke(*args).exit_code == 0
    assert [r["output"] for r in records(out)][2:] == ["chelsea__starry_night_gold__gatys.png"]


@pytest.mark.slow
def test_outputs_inside_the_content_folder_are_not_inputs(tiny: Path, tmp_path: Path, invoke,
                                                          records, fast) -> None:
    content = tmp_path / "content"
    shutil.copytree(tiny / "content", content)
    out = content / "stylised"
    args = ("run", "gatys", "--content", content, "--style",
            tiny / "style" / "starry_night_gold.png", "--out", out, "--recursive", *fast)
    assert invoke(*args).exit_code == 0
    again = invoke(*args)
    assert "2 job(s) already done" in again.output
    assert len(records(out)) == 2


@pytest.mark.slow
def test_a_recipe_name_with_a_dot_keeps_its_outputs_apart(tmp_path: Path, run_tiny) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("extends: gatys\nname: gatys.v2\n")
    out = tmp_path / "out"
    assert run_tiny(out).exit_code == 0
    assert run_tiny(out, recipe=str(recipe)).exit_code == 0
    assert len(list(out.glob("*__gatys.v2.png"))) == 4
    assert len(list(out.glob("*__gatys.png"))) == 4


@pytest.mark.slow
def test_a_torn_manifest_line_is_skipped(tmp_path: Path, run_tiny) -> None:
    out = tmp_path / "out"
    assert run_tiny(out).exit_code == 0
    with (out / "manifest.jsonl").open("ab") as handle:
        handle.write('{"output": "caf\u00e9'.encode()[:-1])  # cut inside a UTF-8 character
    again = run_tiny(out)
    assert again.exit_code == 0, again.output
    assert "4 job(s) already done" in again.output


@pytest.mark.slow
def test_one_bad_image_fails_alone(tiny: Path, tmp_path: Path, invoke, fast) -> None:
    content = tmp_path / "content"
    shutil.copytree(tiny / "content", content)
    (content / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    result = invoke("run", "gatys", "--content", content, "--style", tiny / "style" /
                    "starry_night.png", "--out", out, *fast)
    assert result.exit_code == 1, result.output
    latest = latest_records(out)
    assert latest["broken__starry_night__gatys.png"]["status"] == "failed"
    assert "UnidentifiedImageError" in latest["broken__starry_night__gatys.png"]["error"]
    assert [latest[n]["status"] for n in ("chelsea__starry_night__gatys.png",
                                          "coffee__starry_night__gatys.png")] == ["done"] * 2
    assert "failed: broken__starry_night__gatys.png: " in result.output
    assert not (out / "broken__starry_night__gatys.png").exists()


@pytest.mark.slow
def test_fail_fast_stops_after_the_first_failure(tiny: Path, tmp_path: Path, invoke, records,
                                                 fast) -> None:
    content = tmp_path / "content"
    content.mkdir()
    (content / "a_broken.png").write_bytes(b"")
    shutil.copy(tiny / "content" / "chelsea.png", content)
    out = tmp_path / "out"
    result = invoke("run", "gatys", "--content", content, "--style", tiny / "style" /
                    "starry_night.png", "--out", out, *fast, "--fail-fast")
    assert result.exit_code == 1
    assert [r["status"] for r in records(out)] == ["failed"]


@pytest.mark.slow
def test_shards_partition_the_jobs(tmp_path: Path, run_tiny) -> None:
    out = tmp_path / "out"
    for index in range(3):
        assert run_tiny(out, "--shard", f"{index}/3").exit_code == 0
    manifests = sorted(p.name for p in out.glob("manifest*.jsonl"))
    assert manifests == [f"manifest.shard-{i}-of-3.jsonl" for i in range(3)]
    summaries = sorted(p.name for p in out.glob("summary*.json"))
    assert summaries == [f"summary.shard-{i}-of-3.json" for i in range(3)]
    outputs = [json.loads(line)["output"] for m in manifests
               for line in (out / m).read_text().splitlines()]
    assert len(outputs) == len(set(outputs)) == 4
    assert "4 job(s) already done" in run_tiny(out).output


def test_select_shard_is_a_partition() -> None:
    jobs = plan_jobs([Path(f"c{i}.jpg") for i in range(7)], [Path("s1.jpg"), Path("s2.jpg")],
                     "gatys", "png")
    shards = [select_shard(jobs, i, 4) for i in range(4)]
    assert sorted(j.output for shard in shards for j in shard) == sorted(j.output for j in jobs)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_colliding_names_get_distinct_outputs() -> None:
    jobs = plan_jobs([Path("a/x.jpg"), Path("b/x.jpg"), Path("X.png")], [Path("s.jpg")],
                     "gatys", "png")
    names = [job.output for job in jobs]
    assert len({name.lower() for name in names}) == 3
    assert all(name.startswith(("x__s__gatys-", "X__s__gatys-")) for name in names)


def test_output_names_stay_inside_the_output_folder() -> None:
    [job] = plan_jobs([Path("../../etc/..x y.jpg")], [Path("/abs/st\u00efle.png")], "gatys",
                      "png")
    assert job == Job(Path("../../etc/..x y.jpg"), Path("/abs/st\u00efle.png"),
                      "x_y__st\u00efle__gatys.png")


def test_dry_run_lists_jobs_and_writes_nothing(tiny: Path, tmp_path: Path, invoke) -> None:
    out = tmp_path / "out"
    result = invoke("run", "preview", "--content", tiny / "content", "--style",
                    tiny / "style", "--out", out, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "preview: 4 to do, 0 done" in result.output
    assert not out.exists()


def test_dry_run_prints_the_memory_estimate(tiny: Path, tmp_path: Path, invoke) -> None:
    from nstkit.memory import estimate_for_recipe

    result = invoke("run", "gatys", "--content", tiny / "content", "--style", tiny / "style",
                    "--out", tmp_path / "out", "--dry-run", "--size", "96", "--batch-size", "2",
                    "--set", "precision=bf16")
    assert result.exit_code == 0, result.output
    config = load_recipe("gatys", ["size=96", "precision=bf16"]).config
    expected = estimate_for_recipe(config, 64, 96, batch=2)  # the 64 x 43 contents at 96 px
    assert "memory plan for " in result.output
    assert f"whole image: {expected}; needs " in " ".join(result.output.split())
    assert expected.batch == 2
    assert expected.activations != estimate_for_recipe(  # --set precision=bf16 reached it
        load_recipe("gatys", ["size=96"]).config, 64, 96, batch=2).activations


def test_dry_run_plans_tiles_or_says_what_to_change(tiny: Path, tmp_path: Path, invoke) -> None:
    """At 6000 px no machine has the ~100 GiB a whole L-BFGS job needs: the plan says so and
    what to change; with tiling: auto it prints the tiles."""
    args = ["run", "gatys", "--content", tiny / "content" / "chelsea.png", "--style",
            tiny / "style", "--out", tmp_path / "out", "--dry-run", "--size", "6000"]
    whole = invoke(*args)
    assert whole.exit_code == 0, whole.output
    text = " ".join(whole.output.split())
    assert "does not fit" in text
    assert "tiling: auto" in text
    tiled = " ".join(invoke(*args, "--set", "tiling=auto", "--set", "optimizer.name=adam"
                            ).output.split())
    assert "tiled: " in tiled
    assert " tiles of " in tiled
    assert "activations per tile" in tiled


@pytest.mark.slow
def test_save_every_writes_intermediate_images(tiny: Path, tmp_path: Path, invoke) -> None:
    out = tmp_path / "out"
    result = invoke("run", "gatys", "--content", tiny / "content" / "chelsea.png", "--style",
                    tiny / "style" / "starry_night_gold.png", "--out", out, "--size", "32",
                    "--iterations", "4", "--save-every", "2", "-q")
    assert result.exit_code == 0, result.output
    steps = sorted(p.name for p in (out / "steps" / "chelsea__starry_night_gold__gatys").iterdir())
    assert steps == ["step_00002.png", "step_00004.png"]


@pytest.mark.slow
def test_batch_matches_single_runs_with_adam(tiny: Path, tmp_path: Path, invoke, records) -> None:
    """Adam is invariant to the 1/B the batch mean puts on each image's gradient."""
    common = ["--content", tiny / "content", "--style", tiny / "style" / "starry_night.png",
              "--size", "32", "--iterations", "5", "-q", "--set", "optimizer.name=adam"]
    assert invoke("run", "gatys", *common, "--out", tmp_path / "one").exit_code == 0
    result = invoke("run", "gatys", *common, "--out", tmp_path / "two", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert [r["batch_size"] for r in records(tmp_path / "two")] == [2, 2]
    for name in ("chelsea__starry_night__gatys.png", "coffee__starry_night__gatys.png"):
        one, two = (load_image(tmp_path / run / name) for run in ("one", "two"))
        worst = (one - two).abs().max().item() * 255
        assert worst <= 2, f"{name}: max pixel difference {worst:.1f}/255"


@pytest.mark.parametrize(("args", "code", "message"), [
    (["run", "gatsy", "--content", "x", "--style", "y", "--out", "o"], 2,
     "gatsy: no built-in recipe of that name"),
    (["run", "gatys", "--content", "missing", "--style", "y", "--out", "o"], 2,
     "content path 'missing' does not exist"),
    (["run", "gatys", "--content", "{tiny}/content", "--style", "{tiny}/style", "--out", "o",
      "--shard", "3/3"], 2, "--shard must be I/N with 0 <= I < N"),
    (["run", "gatys", "--content", "{tiny}/content", "--style", "{tiny}/style", "--out", "o",
      "--device", "cuda:99"], 2, "--device cuda:99"),
    (["run", "gatys", "--content", "{tiny}/content", "--style", "{tiny}/style", "--out", "o",
      "--device", "mps"], 2, "--device must be auto, cpu, cuda or cuda:N; got 'mps'"),
    (["run", "gatys", "--content", "{tiny}/content", "--style", "{tiny}/style", "--out", "o",
      "--set", "losses.1.weight=abc"], 2,
     "--set: losses[1].weight: must be a number, got 'abc'"),
    (["validate", "gatys", "nope.yaml"], 2, "nope.yaml: cannot read the recipe"),
])
def test_usage_errors_exit_2_without_traceback(tiny: Path, tmp_path: Path, monkeypatch,
                                               args: list[str], code: int, message: str, invoke):
    monkeypatch.chdir(tmp_path)
    result = invoke(*[a.format(tiny=tiny) for a in args])
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_recipes_lists_builtins_and_show_prints_resolved_yaml(invoke) -> None:
    listing = invoke("recipes")
    assert listing.exit_code == 0
    for name in builtin_recipes():
        assert name in listing.output
    shown = invoke("recipes", "show", "colour-preserving", "--set", "size=128")
    assert shown.exit_code == 0, shown.output
    assert "preserve_colour: luminance" in shown.output
    assert "size: 128" in shown.output
    assert "- relu4_2" in shown.output  # inherited from gatys


def test_validate_reports_ok_and_problems(tmp_path: Path, invoke) -> None:
    good = invoke("validate", "gatys", "improved")
    assert good.exit_code == 0
    assert "improved.yaml (built-in): ok (improved, hash " in good.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("losses:\n  - {name: gram, weight: abc}\n  - {name: content, weight: -1}\n")
    result = invoke("validate", "gatys", bad)
    assert result.exit_code == 2
    assert "gatys.yaml (built-in): ok" in result.output
    assert "invalid recipe (2 problems):" in result.output
    assert f"{bad}: losses[0].weight: must be a number, got 'abc'" in result.output
    assert f"{bad}: losses[1].weight: must be >= 0, got -1" in result.output


def _weights_override(name: str) -> list[str]:
    """VGG16 has no offline weights here: its recipes run with random weights in tests."""
    data = builtin_recipes()[name].read_text()
    return ["--set", "extractor.weights=random"] if "vgg16" in data else []


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(builtin_recipes()))
def test_every_builtin_recipe_runs(name: str, tiny: Path, tmp_path: Path, invoke, records) -> None:
    result = invoke("run", name, "--content", tiny / "content" / "chelsea.png", "--style",
                    tiny / "style" / "starry_night.png", "--out", tmp_path, "--size", "48",
                    "--iterations", "2", "-q", *_weights_override(name))
    assert result.exit_code == 0, result.output
    [record] = records(tmp_path)
    assert record["status"] == "done"
    assert all(v == v and abs(v) != float("inf") for v in record["losses"].values())


@pytest.mark.slow
def test_subprocess_end_to_end(tiny: Path, tmp_path: Path, records) -> None:
    """The installed console script, as a user runs it: real weights, a few iterations."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "nstkit", "run", "gatys", "--content",
               str(tiny / "content"), "--style", str(tiny / "style"), "--out", str(out),
               "--size", "48", "--iterations", "3"]
    env = {**os.environ, "NSTKIT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    assert len(list(out.glob("*.png"))) == 4
    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0
    assert "4 job(s) already done" in second.stderr
    assert len(records(out)) == 4


class _CtrlCOnSecondJob:
    """Presses Ctrl-C when the second job starts."""

    def __init__(self) -> None:
        self.started = 0

    @hookimpl
    def on_job_start(self, job) -> None:
        self.started += 1
        if self.started == 2:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_ctrl_c_keeps_finished_jobs_and_exits_130(tmp_path: Path, records, run_tiny) -> None:
    out = tmp_path / "out"
    get_host().add(_CtrlCOnSecondJob(), name="ctrl-c")
    try:
        result = run_tiny(out)
    finally:
        reset_host()
    assert result.exit_code == 130, result.output
    assert [r["status"] for r in records(out)] == ["done"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True
    assert summary["done"] == 1
    assert len(list(out.glob("*.png"))) == 1
    assert not list(out.glob(".*.tmp"))
    rerun = run_tiny(out)
    assert rerun.exit_code == 0
    assert "1 job(s) already done" in rerun.output
    assert len(records(out)) == 4


@pytest.mark.slow
def test_cuda_out_of_memory_names_the_estimate_and_the_fix(tiny: Path, tmp_path: Path,
                                                          monkeypatch, invoke) -> None:
    import torch

    import nstkit.runner.execute as execute

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(execute, "stylize", out_of_memory)
    out = tmp_path / "out"
    result = invoke("run", "gatys", "--content", tiny / "content" / "chelsea.png", "--style",
                    tiny / "style" / "starry_night_gold.png", "--out", out, "--size", "32", "-q")
    assert result.exit_code == 1, result.output
    [record] = latest_records(out).values()
    assert record["status"] == "failed"
    # chelsea.png is 64 x 43: 22 x 32 at --size 32
    assert "Tried to allocate 2.00 GiB (22x32 px, 1 image at once; estimated " in record["error"]
    assert "for 1 x 22x32 px (activations " in record["error"]
    assert "try a smaller --size or --batch-size, or --device cpu" in record["error"]
