"""What lifecycle hooks are told about the job in progress."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class JobInfo:
    """One stylisation as the lifecycle hooks see it.

    Attributes:
        name: a label for displays and logs (the runner uses the output file name).
        iterations: the number of optimiser steps planned (``on_step`` counts 1..iterations).
        device: the torch device the job runs on, e.g. ``"cpu"`` or ``"cuda:0"``.
        size: ``(H, W)`` of the generated image.
        extra: free-form details (recipe name, input paths) for loggers.
        stages: the ``(scale, steps)`` plan of a multiscale job, steps adding up to
            ``iterations`` (empty: every step at full size).
    """

    name: str
    iterations: int
    device: str
    size: tuple[int, int]
    extra: dict[str, Any] = field(default_factory=dict)
    stages: tuple[tuple[float, int], ...] = ()
