"""The batch runner behind ``nstkit run``: plan jobs, run them, record them, resume."""

from nstkit.runner.execute import RunOptions, RunSummary, run_batch
from nstkit.runner.plan import Job, find_images, plan_jobs, select_shard
from nstkit.runner.record import JobRecorder

__all__ = ["Job", "JobRecorder", "RunOptions", "RunSummary", "find_images", "plan_jobs",
           "run_batch", "select_shard"]
