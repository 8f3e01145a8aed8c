"""``nstkit train`` and ``nstkit apply`` from the command line: files written, resuming after
Ctrl-C and kill -9, bad images recorded per job, skipping finished outputs, shards, bad model
files, and a model next to a recipe in ``nstkit compare``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

pytest.importorskip("nstkit_fast", reason="nstkit-fast is not installed: "
                    "pip install -e plugins/nstkit-fast")

from fast_testkit import (
    small_settings,
    state,
    tiny_recipe,
    write_photos,
    write_style,
)
from nstkit_fast import plugin as fast_plugin
from nstkit_fast.training import side_paths, train

from nstkit.plugins import reset_host
from nstkit.testing import add_tiny_extractor

TRAIN = ("--steps", "4", "--batch-size", "2", "--crop", "32", "--size", "64", "--width", "4",
         "--blocks", "1", "--lr", "5e-3", "--device", "cpu", "--checkpoint-every", "2",
         "--quiet")


pytestmark = pytest.mark.usefixtures("tiny_host")


@pytest.fixture
def nstkit_cli():
    """``nstkit_cli(*args)``: ``nstkit ARGS`` in-process, on an app with this plugin's
    commands."""
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """A test app."""

    fast_plugin.register_commands(cli=app)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [*map(str, args)], env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``photos/`` (3 generated photos), ``style.png``, ``tiny.yaml`` and ``m.safetensors``
    (a tiny model trained on them)."""
    reset_host()
    add_tiny_extractor()
    root = tmp_path_factory.mktemp("inputs")
    write_photos(root / "photos", 3)
    write_style(root / "style.png")
    recipe = tiny_recipe(root)
    train(recipe, root / "style.png", sorted((root / "photos").iterdir()),
          root / "m.safetensors", small_settings(steps=2))
    return root


def _records(folder: Path) -> dict[str, dict]:
    lines = (folder / "manifest.jsonl").read_text().splitlines()
    records = {}
    for line in lines:
        record = json.loads(line)
        records[record["output"]] = record
    return records


def test_help_of_both_commands(nstkit_cli):
    train_help = nstkit_cli("train", "--help")
    assert train_help.exit_code == 0
    for option in ("--style", "--content", "--out", "--steps", "--batch-size", "--crop",
                   "--lr", "--width", "--blocks", "--device", "--checkpoint-every",
                   "--preview-every", "--minutes", "--restart", "--set", "--strength"):
        assert option in train_help.output
    apply_help = nstkit_cli("apply", "--help")
    for option in ("--content", "--out", "--size", "--batch-size", "--tile",
                   "--preserve-colour", "--shard", "--engine", "--overwrite", "--dry-run"):
        assert option in apply_help.output


def test_train_writes_the_model_curve_and_checkpoint(nstkit_cli, inputs, tmp_path):
    model = tmp_path / "wave.safetensors"
    result = nstkit_cli("train", inputs / "tiny.yaml", "--style", inputs / "style.png",
                        "--content", inputs / "photos", "--out", model, *TRAIN,
                        "--preview-every", "2")
    assert result.exit_code == 0, result.output
    assert "4 steps (done; 4 this run" in result.output
    assert model.is_file()
    assert side_paths(model)["curve"].is_file()
    assert len(list(side_paths(model)["previews"].iterdir())) == 2
    again = nstkit_cli("train", inputs / "tiny.yaml", "--style", inputs / "style.png",
                       "--content", inputs / "photos", "--out", model, *TRAIN)
    assert "4 steps (done; 0 this run" in again.output


def test_train_refuses_a_model_name_without_the_suffix(nstkit_cli, inputs, tmp_path):
    result = nstkit_cli("train", inputs / "tiny.yaml", "--style", inputs / "style.png",
                        "--content", inputs / "photos", "--out", tmp_path / "m.pt", *TRAIN)
    assert result.exit_code == 2
    assert "a model file ends in .safetensors" in result.output


def test_apply_over_a_folder_records_bad_images_per_job(nstkit_cli, inputs, tmp_path):
    photos = tmp_path / "photos"
    write_photos(photos, 2)
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    result = nstkit_cli("apply", inputs / "m.safetensors", "--content", photos, "--out", out,
                        "--batch-size", "2", "--quiet")
    assert result.exit_code == 1, result.output
    records = _records(out)
    assert {name: r["status"] for name, r in records.items()} == {
        "photo0__m__fast.png": "done", "photo1__m__fast.png": "done",
        "broken__m__fast.png": "failed"}
    assert "ImageError" in records["broken__m__fast.png"]["error"]
    done = records["photo0__m__fast.png"]
    assert done["style"]["path"] == str(inputs / "m.safetensors")
    assert done["recipe_data"]["model"]["network"] == {"width": 4, "blocks": 1}
    assert done["size"] == [64, 64]
    assert (out / "photo0__m__fast.png").is_file()
    assert json.loads((out / "summary.json").read_text())["failed"] == 1
    (photos / "broken.jpg").unlink()
    again = nstkit_cli("apply", inputs / "m.safetensors", "--content", photos, "--out", out,
                       "--batch-size", "2", "--quiet")
    assert again.exit_code == 0, again.output
    assert json.loads((out / "summary.json").read_text())["skipped"] == 2


def test_apply_writes_the_networks_forward(nstkit_cli, inputs, tmp_path):
    """Each output is the network's output for its photo (to the 8 bits of the PNG: nstkit
    saves by truncation, as torchvision's ``to_pil_image``),
    whether photos go through in a batch or alone, whole or in tiles with colour kept."""
    from nstkit_fast.inference import stylise
    from nstkit_fast.modelfile import load_model

    from nstkit.image import load_image

    net = load_model(inputs / "m.safetensors").net
    photos = sorted((inputs / "photos").iterdir())
    for extra, options in (((), {}), (("--batch-size", "3"), {}),
                           (("--tile", "48", "--preserve-colour", "linear"),
                            {"tile": 48, "preserve_colour": "linear"})):
        out = tmp_path / f"out{len(extra)}"
        result = nstkit_cli("apply", inputs / "m.safetensors", "--content", inputs / "photos",
                            "--out", out, "--quiet", *extra)
        assert result.exit_code == 0, result.output
        for photo in photos:
            image = load_image(photo)
            expected = stylise(net, image, **options)
            written = load_image(out / f"{photo.stem}__m__fast.png")
            assert written.shape == image.shape
            assert (written - expected).abs().max() <= 1 / 255 + 1e-6, (extra, photo.name)
            if not options:  # and not the photo itself, nor a constant
                assert (written - image).abs().mean() > 0.05
                assert written.std() > 0.01


def test_apply_redoes_outputs_when_an_option_changes_them(nstkit_cli, inputs, tmp_path):
    out = tmp_path / "out"
    args = ("apply", inputs / "m.safetensors", "--content", inputs / "photos", "--out", out,
            "--quiet")
    assert nstkit_cli(*args).exit_code == 0
    assert "3 to do, 0 done" in nstkit_cli(*args, "--size", "32", "--dry-run").output
    assert "0 to do, 3 done" in nstkit_cli(*args, "--dry-run").output
    changed = nstkit_cli(*args, "--preserve-colour", "luminance", "--dry-run")
    assert "3 to do, 0 done" in changed.output
    target = out / "photo0__m__fast.png"
    target.write_bytes(b"changed")
    assert "1 to do, 2 done" in nstkit_cli(*args, "--dry-run").output


def test_apply_shards_cover_every_photo_once(nstkit_cli, inputs, tmp_path):
    out = tmp_path / "out"
    for index in range(2):
        result = nstkit_cli("apply", inputs / "m.safetensors", "--content", inputs / "photos",
                            "--out", out, "--shard", f"{index}/2", "--quiet")
        assert result.exit_code == 0, result.output
    outputs = sorted(p.name for p in out.glob("*.png"))
    assert outputs == ["photo0__m__fast.png", "photo1__m__fast.png", "photo2__m__fast.png"]
    assert sorted(p.name for p in out.glob("manifest*.jsonl")) == [
        "manifest.shard-0-of-2.jsonl", "manifest.shard-1-of-2.jsonl"]


def test_apply_refuses_a_bad_model_file(nstkit_cli, inputs, tmp_path):
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"\x80\x04garbage")
    result = nstkit_cli("apply", fake, "--content", inputs / "photos", "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "is not a safetensors model file" in result.output
    assert not (tmp_path / "o").exists()


def test_apply_refuses_a_training_checkpoint_naming_the_model(nstkit_cli, inputs, tmp_path):
    checkpoint = side_paths(inputs / "m.safetensors")["checkpoint"]
    result = nstkit_cli("apply", checkpoint, "--content", inputs / "photos", "--out",
                        tmp_path / "o")
    assert result.exit_code == 2
    assert "is a training checkpoint, not a model" in " ".join(result.output.split())
    assert not (tmp_path / "o").exists()


def test_apply_in_tiles_and_with_colour(nstkit_cli, inputs, tmp_path):
    out = tmp_path / "out"
    result = nstkit_cli("apply", inputs / "m.safetensors", "--content", inputs / "photos",
                        "--out", out, "--tile", "48", "--preserve-colour", "linear",
                        "--format", "jpg", "--quiet")
    assert result.exit_code == 0, result.output
    records = _records(out)
    assert all(r["tiled"] for r in records.values())
    assert sorted(records) == [f"photo{i}__m__fast.jpg" for i in range(3)]


def _checkpoint_step(path: Path) -> int:
    from nstkit_fast.training import read_checkpoint

    return int(read_checkpoint(path)[0]["step"])


def _train_command(root: Path, model: Path, steps: int) -> list[str]:
    code = ("import sys; from nstkit.testing import add_tiny_extractor; add_tiny_extractor(); "
            "from nstkit.cli import main; sys.argv = ['nstkit'] + sys.argv[1:]; main()")
    args = ["train", str(root / "tiny.yaml"), "--style", str(root / "style.png"), "--content",
            str(root / "photos"), "--out", str(model), *TRAIN]
    args[args.index("--steps") + 1] = str(steps)
    args[args.index("--checkpoint-every") + 1] = "1"
    return [sys.executable, "-c", code, *args]


@pytest.mark.slow
def test_train_resumes_after_kill_9_with_the_uninterrupted_weights(inputs, tmp_path):
    """A training killed with SIGKILL after some checkpoints, rerun, ends with the weights of
    one that ran through."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed.safetensors"
    process = subprocess.Popen(_train_command(inputs, killed, 20), env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = side_paths(killed)["checkpoint"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if checkpoint.exists() and _checkpoint_step(checkpoint) >= 3:
            break
        time.sleep(0.05)
    assert process.poll() is None, "training ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    stopped_at = _checkpoint_step(checkpoint)
    assert 3 <= stopped_at < 20
    subprocess.run(_train_command(inputs, killed, 20), env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    recipe = tiny_recipe(tmp_path)
    whole = tmp_path / "whole.safetensors"
    photos = sorted((inputs / "photos").iterdir())
    train(recipe, inputs / "style.png", photos, whole, small_settings(steps=20))
    a, b = state(whole), state(killed)
    assert all(torch.equal(a[name], b[name]) for name in a)


@pytest.mark.slow
def test_apply_on_ray_records_like_local(nstkit_cli, inputs, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    result = nstkit_cli("apply", inputs / "m.safetensors", "--content", inputs / "photos",
                        "--out", out, "--engine", "ray", "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    records = _records(out)
    assert sorted(records) == [f"photo{i}__m__fast.png" for i in range(3)]
    assert all(r["worker"]["engine"] == "ray" for r in records.values())
    assert all(r["content"]["path"].startswith(str(inputs)) for r in records.values())
    again = nstkit_cli("apply", inputs / "m.safetensors", "--content", inputs / "photos",
                       "--out", out, "--dry-run")
    assert "0 to do, 3 done" in again.output


@pytest.mark.slow
def test_compare_puts_a_model_next_to_a_recipe(inputs, tmp_path):
    """``nstkit compare RECIPE MODEL``: the model's outputs are made by the network and judged
    like the recipe's; a pair with another style fails, naming the model's style."""
    from nstkit.cli import app

    other = tmp_path / "other.png"
    write_style(other, 48)
    out = tmp_path / "cmp"
    runner = CliRunner()
    result = runner.invoke(app, ["compare", str(inputs / "tiny.yaml"),
                                 str(inputs / "m.safetensors"), "--content",
                                 str(inputs / "photos" / "photo0.png"), "--style",
                                 str(inputs / "style.png"), "--style", str(other),
                                 "--out", str(out), "--size", "32",
                                 "--iterations", "2", "--judge-size", "32", "--quiet"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output  # the model has no output for other.png
    data = json.loads((out / "results.json").read_text())
    rows = data["rows"] if isinstance(data, dict) else data
    model = str(inputs / "m.safetensors")
    status = {(row["variant"], Path(row["style"]).name): row for row in rows}
    assert status[(model, "style.png")]["status"] == "done"
    assert status[(model, "style.png")]["judged_content"] is not None
    assert status[("tiny.yaml" if ("tiny.yaml", "style.png") in status
                   else str(inputs / "tiny.yaml"), "style.png")]["status"] == "done"
    assert status[(model, "other.png")]["status"] == "failed"
    assert "trained on another style (style.png)" in status[(model, "other.png")]["error"]
    assert list((out / "runs").rglob("photo0__style__m.png"))


@pytest.mark.slow
def test_the_entry_point_imports_no_torch():
    from nstkit.testing import modules_after

    assert modules_after("import nstkit_fast.plugin, nstkit_fast",
                         ("torch", "safetensors", "numpy")) == []


def test_the_plugin_is_installed_with_its_commands_and_claim():
    from nstkit.plugins import get_host

    hooks = next(info.hooks for info in get_host().info() if info.name == "fast")
    assert {"register_commands", "compare_variant"} <= set(hooks)
    assert fast_plugin.compare_variant(ref="recipe.yaml", sets=[]) is None
