"""Intermediate images every N steps, written by a plugin on the ``on_step`` hook."""

from __future__ import annotations

from pathlib import Path

import torch

from nstkit.hookspecs import hookimpl
from nstkit.image import save_image
from nstkit.job import JobInfo


class SnapshotWriter:
    """Saves ``<out>/steps/<output stem>/step_00050.<format>`` every ``every`` steps.

    The runner puts the batch's output names in ``job.extra["outputs"]``.
    """

    def __init__(self, out_dir: Path, every: int, suffix: str) -> None:
        self.out_dir, self.every, self.suffix = out_dir, every, suffix

    @hookimpl
    def on_step(self, job: JobInfo, step: int, image: torch.Tensor) -> None:
        outputs = job.extra.get("outputs")
        if not outputs or self.every <= 0 or step % self.every:
            return
        for index, name in enumerate(outputs):
            target = self.out_dir / "steps" / Path(name).stem / f"step_{step:05d}.{self.suffix}"
            save_image(image[index], target)
