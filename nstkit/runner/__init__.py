"""The batch runner behind ``nstkit run``: plan jobs, run them, record them, resume.

Importing the package is light: planning (:mod:`.plan`), manifests (:mod:`.manifest`) and
``nstkit status`` (:mod:`.status`) need no torch; what runs jobs loads on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from nstkit.runner.plan import Job, find_images, plan_jobs, select_shard

if TYPE_CHECKING:
    from nstkit.runner.execute import RunOptions, RunSummary, run_batch
    from nstkit.runner.record import JobRecorder

__all__ = ["Job", "JobRecorder", "RunOptions", "RunSummary", "find_images", "plan_jobs",
           "run_batch", "select_shard"]
_LAZY = {"RunOptions": "nstkit.runner.execute", "RunSummary": "nstkit.runner.execute",
         "run_batch": "nstkit.runner.execute", "JobRecorder": "nstkit.runner.record"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nstkit.runner' has no attribute {name!r}")
