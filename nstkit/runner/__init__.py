"""The batch runner behind ``nstkit run``: plan jobs, run them, record them, resume."""

from nstkit.runner.execute import RunOptions, RunSummary, run_batch
from nstkit.runner.plan import Job, find_images, plan_jobs, select_shard

__all__ = ["Job", "RunOptions", "RunSummary", "find_images", "plan_jobs", "run_batch",
           "select_shard"]
