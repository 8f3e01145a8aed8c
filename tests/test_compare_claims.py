"""The ``compare_variant`` hook: a plugin claims a ``nstkit compare`` argument that is not a
recipe, and its executor makes that variant's outputs (nstkit-fast's model files use it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nstkit.compare import plan_variants
from nstkit.compare.collect import Collector
from nstkit.errors import PluginError
from nstkit.executors import RunRequest
from nstkit.image import save_image
from nstkit.recipe import load_recipe
from nstkit.runner.execute import InputHashes, RunOptions
from nstkit.runner.manifest import ManifestWriter, file_sha256
from nstkit.runner.record import JobRecorder, RunSummary
from nstkit.testing import make_host, tiny_images


class CopyExecutor:
    """Makes every job's output by copying its content image (an engine under the contract:
    one record per job in ``options.out``, outputs written atomically)."""

    def __init__(self) -> None:
        self.runs: list[RunRequest] = []

    def run(self, request: RunRequest) -> RunSummary:
        self.runs.append(request)
        out = request.options.out
        recorder = JobRecorder(request.recipe, "cpu", ManifestWriter(out), request.report)
        for job in request.jobs:
            target = out / job.output
            target.write_bytes(job.content.read_bytes())
            recorder.done(job, 0.0, {}, output_sha256=file_sha256(target))
        return recorder.summary


def _load(ref: str, sets: list[str]):
    return load_recipe(ref, sets)


def test_hook_compare_variant(make_plugin, tmp_path: Path) -> None:
    executor, seen = CopyExecutor(), []

    def compare_variant(ref, sets):
        seen.append((ref, sets))
        if not ref.startswith("copy:"):
            return None
        recipe = load_recipe("gatys", ["name=copy", *sets])
        return recipe, executor

    host = make_host(make_plugin(compare_variant=compare_variant))
    variants = plan_variants(["preview", "copy:x"], ["size=32"], None, _load,
                             host.compare_variant)
    assert seen == [("preview", ["size=32"]), ("copy:x", ["size=32"])]
    assert [v.label for v in variants] == ["preview", "copy:x"]
    assert variants[0].executor is None
    assert variants[1].executor is executor
    assert variants[1].recipe.name == "copy"
    assert variants[1].recipe.data["size"] == 32

    content, style = tmp_path / "photo.png", tmp_path / "style.png"
    save_image(tiny_images(16).content, content)
    save_image(tiny_images(16).style, style)
    never = CopyExecutor()  # the comparison's engine: a claimed variant does not use it
    collector = Collector(tmp_path / "cmp", RunOptions(tmp_path / "cmp"), host,
                          lambda variant, outcome: None, executor=never)
    jobs = collector.plan(variants[1], [content], [style])
    assert [job.output for job in jobs] == ["photo__style__copy.png"]
    summary = collector.run(variants[1], jobs)
    assert summary.count("done") == 1
    assert len(executor.runs) == 1
    assert not never.runs
    assert executor.runs[0].options.out == tmp_path / "cmp" / "runs" / "copy_x"
    todo, reused = collector.pending(variants[1], jobs, InputHashes())
    assert todo == []  # done: the claimed recipe's hash and the inputs match its record
    assert reused == {}


def test_no_claim_leaves_the_argument_to_the_recipe_loader() -> None:
    host = make_host()
    assert host.compare_variant("gatys", []) is None
    variants = plan_variants(["gatys", "preview"], [], None, _load, host.compare_variant)
    assert all(v.executor is None for v in variants)


def test_a_claim_that_raises_names_the_plugin(make_plugin) -> None:
    def compare_variant(ref):
        raise RuntimeError("broken")

    host = make_host(make_plugin(compare_variant=compare_variant))
    with pytest.raises(PluginError, match="compare_variant raised RuntimeError: broken"):
        host.compare_variant("x", [])
