"""Built-in executors: ``local`` and ``ray`` (Ray itself is imported only when ``ray`` is used)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nstkit.errors import NstkitError
from nstkit.hookspecs import Register, hookimpl

if TYPE_CHECKING:
    from nstkit.executors.ray import RayExecutor


def ray_executor(*, address: str | None = None, **options: object) -> RayExecutor:
    """Ray actors, one per GPU (CPU actors without GPUs); needs nstkit[ray]."""
    try:
        from nstkit.executors.ray import RayExecutor
    except ImportError as exc:
        if exc.name is None or not exc.name.split(".")[0] == "ray":
            raise
        raise NstkitError("--engine ray needs Ray, which is not installed: "
                          "pip install 'nstkit[ray]'") from None
    return RayExecutor(address=address, **options)


@hookimpl
def register_executors(register: Register) -> None:
    register("local", "nstkit.executors.local:local_executor",
             description="This process, one job after another.")
    register("ray", ray_executor)
