"""Atomic writes: all or nothing, umask-default permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from nstkit.atomic import atomic_file, write_atomic
from nstkit.image import load_image, save_image


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_atomic_replaces_content(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.write_text("old")
    write_atomic(target, "new é")
    assert target.read_text(encoding="utf-8") == "new é"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_failed_write_keeps_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    def write_half() -> None:
        with atomic_file(target) as handle:
            handle.write(b"half")
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_half()
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_get_umask_default_permissions(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        check_modes(tmp_path, umask)
    finally:
        os.umask(old)


def check_modes(tmp_path: Path, umask: int) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what open() gives a new file under this umask
    written = write_atomic(tmp_path / "atomic.txt", "x")
    image = save_image(torch.rand(3, 4, 5), tmp_path / "img.png")
    assert mode(plain) == 0o666 & ~umask
    assert mode(written) == mode(plain)
    assert mode(image) == mode(plain)
    assert load_image(image).shape == (1, 3, 4, 5)
