from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from nstkit.cli import app, samples_dir
from nstkit.cli.common import run_errors
from nstkit.cli.options import DryRun, FailFast, Shard, shard_option
from nstkit.errors import NstkitError
from nstkit.image import load_image

runner = CliRunner()


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("stylize", "demo", "plugins", "layers"):
        assert command in result.output


def test_layers_lists_names_with_keras_aliases() -> None:
    result = runner.invoke(app, ["layers", "vgg19"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == "conv1_1"
    assert "relu4_2  (alias: block4_conv2)" in lines
    assert lines[-1] == "pool5  (alias: block5_pool)"
    assert len(lines) == 37


def test_unknown_extractor_exits_2_without_traceback() -> None:
    result = runner.invoke(app, ["layers", "vgg21"])
    assert result.exit_code == 2
    expected = "unknown extractor 'vgg21'. Did you mean 'vgg19'? Available: vgg16, vgg19."
    assert expected in result.output
    assert "Traceback" not in result.output


def test_plugins_lists_the_builtins() -> None:
    result = runner.invoke(app, ["plugins"])
    assert result.exit_code == 0
    for name in ("nstkit.default_plugins.losses", "shifted_gram", "colour", "lbfgs", "vgg19"):
        assert name in result.output


@pytest.mark.slow
def test_stylize_writes_the_image(tiny, tmp_path) -> None:
    out = tmp_path / "result.png"
    content, style = tiny / "content" / "chelsea.png", tiny / "style" / "starry_night_gold.png"
    args = ["stylize", str(content), str(style), "--out", str(out), "--size", "32",
            "--iterations", "2", "--device", "cpu", "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (2 iterations" in result.output
    assert load_image(out).shape == (1, 3, 22, 32)  # the content is 64 x 43


def test_stylize_starts_from_the_recommended_recipe() -> None:
    from nstkit.recommended import RECOMMENDED

    result = runner.invoke(app, ["stylize", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert f"[default: {RECOMMENDED}]" in result.output


def test_stylize_reports_a_missing_file(tmp_path) -> None:
    result = runner.invoke(app, ["stylize", str(tmp_path / "nope.jpg"), str(tmp_path / "s.jpg"),
                                 "--out", str(tmp_path / "o.png"), "--device", "cpu", "-q"])
    assert result.exit_code == 2
    assert "nope.jpg" in result.output


@pytest.mark.slow
def test_demo_uses_the_bundled_samples(tmp_path) -> None:
    contents = sorted(p.name for p in (samples_dir() / "content").glob("*.jpg"))
    styles = sorted(p.name for p in (samples_dir() / "style").glob("*.jpg"))
    assert len(contents) >= 2
    assert len(styles) >= 1
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--size", "64",
                                 "--iterations", "1", "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    assert len(list(tmp_path.glob("*.png"))) == len(contents) * len(styles)
    assert (tmp_path / "manifest.jsonl").is_file()


@pytest.mark.slow
def test_an_image_too_small_for_the_layers_is_a_clear_job_error(tiny, tmp_path) -> None:
    wide = samples_dir() / "content" / "coffee.jpg"  # 3:2, so 16 px wide is 11 px high
    result = runner.invoke(app, ["run", "gatys", "--content", str(wide), "--style",
                                 str(tiny / "style" / "starry_night_gold.png"), "--out",
                                 str(tmp_path), "--size", "16", "--iterations", "1", "-q"])
    assert result.exit_code == 1
    assert ("ValueError: " + str(wide) + ": a 11x16 px image is too small for layer 'relu5_1'"
            in " ".join(result.output.split()))  # rich may wrap the long line
    assert "(asked for size 16)" in " ".join(result.output.split())


# --- what command modules share: nstkit.cli.options and nstkit.cli.common ---------------------

ERRORS = {"ctrl-c": KeyboardInterrupt(), "nstkit": NstkitError("the recipe is bad"),
          "disk": OSError(28, "No space left on device")}
shared = typer.Typer()


@shared.command()
def go(out: Path, dry_run: DryRun = False, shard: Shard = None, fail_fast: FailFast = False,
       error: Annotated[str, typer.Option("--raise")] = "") -> None:
    """A command with the shared options: echoes them, then raises ERRORS[--raise] inside
    run_errors(OUT)."""
    print(f"dry_run={dry_run} shard={shard_option(shard)} fail_fast={fail_fast}")
    with run_errors(out):
        if error:
            raise ERRORS[error]
    print("finished")


def test_the_shared_run_options_parse_and_default() -> None:
    given = runner.invoke(shared, ["o", "--dry-run", "--shard", "1/4", "--fail-fast"])
    assert given.exit_code == 0, given.output
    assert given.output.splitlines() == ["dry_run=True shard=(1, 4) fail_fast=True", "finished"]
    default = runner.invoke(shared, ["o"])
    assert default.output.splitlines()[0] == "dry_run=False shard=None fail_fast=False"
    shown = runner.invoke(shared, ["--help"], env={"COLUMNS": "200"}).output
    assert "Print the planned jobs and stop." in shown
    assert "Stop at the first failed job." in shown
    assert "Run shard I of N (0-based), e.g. 0/4, for job arrays" in shown


def test_shard_option_reads_i_of_n_auto_or_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert shard_option(None) is None
    assert shard_option("") is None
    assert shard_option(" 2 / 8 ") == (2, 8)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert shard_option(" auto ") == (1, 3)
    with pytest.raises(NstkitError, match=r"--shard must be I/N with 0 <= I < N \(e\.g\. 0/4\), "
                                          r"got '3/3'"):
        shard_option("3/3")


@pytest.mark.parametrize(("error", "code", "message"), [
    ("ctrl-c", 130, ""),
    ("nstkit", 2, "error: the recipe is bad"),
    ("disk", 1, "error: writing to OUT failed: [Errno 28] No space left on device"),
])
def test_run_errors_turn_the_end_of_a_run_into_exit_codes(error: str, code: int,
                                                          message: str) -> None:
    result = runner.invoke(shared, ["OUT", "--raise", error])
    assert result.exit_code == code
    assert result.stdout.splitlines() == ["dry_run=False shard=None fail_fast=False"]
    assert result.stderr.splitlines() == ([message] if message else [])


def test_run_errors_let_other_errors_through(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="a bug"), run_errors(tmp_path):
        raise ValueError("a bug")
    with run_errors(tmp_path):
        pass
