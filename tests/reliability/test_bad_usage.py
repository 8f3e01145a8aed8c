"""Bad folders, recipes and weight files: ``nstkit run`` exits 2 with the problem named, no
traceback, and runs (and writes) nothing.

The word-for-word recipe messages are tested in tests/test_recipes.py; here the point is what
the command does with them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

Case = Callable[[Path, Path], tuple[list[object], str]]


def _recipe(text: str, message: str) -> Case:
    def case(tiny: Path, tmp: Path) -> tuple[list[object], str]:
        (tmp / "r.yaml").write_text(text)
        return [tmp / "r.yaml", tiny / "content", tiny / "style"], message
    return case


def _cycle(tiny: Path, tmp: Path) -> tuple[list[object], str]:
    (tmp / "a.yaml").write_text("extends: b.yaml\n")
    (tmp / "b.yaml").write_text("extends: a.yaml\n")
    return [tmp / "a.yaml", tiny / "content", tiny / "style"], "extends: cycle"


def _empty_folder(tiny: Path, tmp: Path) -> tuple[list[object], str]:
    (tmp / "empty").mkdir()
    (tmp / "empty" / "notes.txt").write_text("no pictures here")
    return ["gatys", tmp / "empty", tiny / "style"], "no images (.jpg, .jpeg, .png"


def _missing(tiny: Path, tmp: Path) -> tuple[list[object], str]:
    return ["gatys", tmp / "nope", tiny / "style"], f"content path '{tmp / 'nope'}' does not exist"


def _weights(make: Callable[[Path], None], message: str) -> Case:
    def case(tiny: Path, tmp: Path) -> tuple[list[object], str]:
        path = tmp / "vgg.pth"
        make(path)
        return ["gatys", tiny / "content", tiny / "style", "--set",
                f"extractor.weights={path}"], message.format(path=path)
    return case


CASES: dict[str, Case] = {
    "invalid YAML": _recipe("size: [1, 2\n", "invalid YAML at line 2, column 1"),
    "wrong type": _recipe("style_scale: big\n", "style_scale: must be a number, got 'big'"),
    "unknown key": _recipe("sizes: 64\n", "sizes: unknown key."),
    "unknown loss": _recipe("losses: [{name: gramm}]\n", "unknown loss 'gramm'. Did you mean"),
    "unknown extractor": _recipe("extractor: {name: vgg20}\n", "unknown extractor 'vgg20'"),
    "unknown optimizer": _recipe("optimizer: {name: adamw, iterations: 2}\n",
                                 "unknown optimizer 'adamw'"),
    "negative weight": _recipe("losses: [{name: gram, weight: -1}]\n", "must be >= 0, got -1"),
    "NaN weight": _recipe("losses: [{name: gram, weight: .nan}]\n",
                          "must be a finite number, got nan"),
    "unknown layer": _recipe("losses: [{name: gram, layers: [relu9_1]}]\n",
                             "unknown layer 'relu9_1' for vgg19"),
    "extends cycle": _cycle,
    "folder without images": _empty_folder,
    "missing input": _missing,
    "missing weights": _weights(lambda path: None, "no file '{path}'"),
    "corrupt weights": _weights(lambda path: path.write_bytes(b"\x00garbage" * 100),
                                "cannot read weights file {path}: not a torch state dict"),
    "weights that do not fit": _weights(lambda path: torch.save({"0.weight": torch.zeros(2)},
                                                                path), "do not fit vgg19"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_usage_exits_2_and_writes_nothing(tiny: Path, tmp_path: Path, run, case: Case) -> None:
    (recipe, content, style, *extra), message = case(tiny, tmp_path)
    out = tmp_path / "out"
    result = run(content, style, out, *extra, recipe=str(recipe))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["a file", "inside a file"])
def test_an_output_folder_that_cannot_be_written_is_refused(tiny: Path, tmp_path: Path, run,
                                                            kind: str) -> None:
    (tmp_path / "taken").write_text("keep me")
    out = tmp_path / "taken" if kind == "a file" else tmp_path / "taken" / "out"
    result = run(tiny / "content", tiny / "style", out)
    assert result.exit_code == 2, result.output
    reason = "exists and is not a folder" if kind == "a file" else "is not writable"
    assert f"--out {str(out)!r} {reason}" in result.output
    assert (tmp_path / "taken").read_text() == "keep me"
