"""The ``local`` engine: every job in this process, one after another (the default)."""

from __future__ import annotations

from nstkit.errors import NstkitError
from nstkit.executors import RunRequest
from nstkit.runner.execute import RunSummary, run_batch


class LocalExecutor:
    """Runs the jobs here with :func:`nstkit.runner.run_batch` (lifecycle hooks fire on the
    request's host, so its display and plugins see every step)."""

    def run(self, request: RunRequest) -> RunSummary:
        return run_batch(request.recipe, request.jobs, request.options, request.host,
                         request.report)


def local_executor(*, address: str | None = None) -> LocalExecutor:
    """This process, one job after another."""
    if address is not None:
        raise NstkitError("--address is for engines that connect to a cluster (--engine ray); "
                          "the local engine runs here")
    return LocalExecutor()
