"""Every hook nstkit calls. Plugins implement them with ``@nstkit.hookimpl``.

Registration hooks receive a ``register`` callback, so the host can check names, record which
plugin registered what and report clashes on the spot. Call hooks with keyword arguments; a hook
evolves by gaining parameters, never by renaming or losing them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import torch

    from nstkit.job import JobInfo
    from nstkit.result import StyleResult

hookspec = pluggy.HookspecMarker("nstkit")
hookimpl = pluggy.HookimplMarker("nstkit")

Register = Callable[..., None]


@hookspec
def register_extractors(register: Register) -> None:
    """Register feature extractors.

    Called once per plugin manager, the first time an extractor is looked up.

    Args:
        register: ``register(name, factory)``. ``factory(*, pooling="max", weights=None)``
            returns a :class:`nstkit.extractors.FeatureExtractor` (an ``nn.Module`` taking RGB
            in ``[0, 1]``, shape ``(B, 3, H, W)``, and returning a dict of named feature maps).

    Returns nothing; a name registered twice raises ``ComponentClashError`` naming both plugins.
    """


@hookspec
def register_losses(register: Register) -> None:
    """Register loss terms.

    Called once per plugin manager, the first time a loss is looked up.

    Args:
        register: ``register(name, factory)``. ``factory(*, layers=None, **options)`` returns a
            :class:`nstkit.losses.LossTerm`: ``layers`` is a mapping of extractor layer name to
            weight (or ``None`` for the term's default); the remaining options are the term's own.

    Returns nothing; a name registered twice raises ``ComponentClashError`` naming both plugins.
    """


@hookspec
def register_optimizers(register: Register) -> None:
    """Register optimisers.

    Called once per plugin manager, the first time an optimiser is looked up.

    Args:
        register: ``register(name, factory)``. ``factory(params, **options)`` returns an object
            with ``step(closure) -> Tensor`` like ``torch.optim.Optimizer``; one ``step`` call is
            one iteration. ``params`` is a list holding the image tensor being optimised.

    Returns nothing; a name registered twice raises ``ComponentClashError`` naming both plugins.
    """


@hookspec
def register_executors(register: Register) -> None:
    """Register engines that run the jobs of ``nstkit run`` (``--engine NAME``).

    Called once per plugin manager, the first time an engine is looked up.

    Args:
        register: ``register(name, factory)``. ``factory(*, address=None)`` returns a
            :class:`nstkit.executors.Executor` (``run(request) -> RunSummary``); ``address``
            is ``--address`` (an engine that connects nowhere raises ``NstkitError`` when given
            one). Import heavy or optional dependencies inside the factory, not at import time.

    Returns nothing; a name registered twice raises ``ComponentClashError`` naming both plugins.
    """


@hookspec
def on_job_start(job: JobInfo) -> None:
    """Called once before the first optimisation step of a job.

    Args:
        job: what is about to run (name, planned iterations, device, size).
    """


@hookspec
def on_step(job: JobInfo, step: int, losses: Mapping[str, float], image: torch.Tensor) -> None:
    """Called after every optimisation step.

    Args:
        job: the job in progress.
        step: the number of the step just finished, from 1 to ``job.iterations``.
        losses: the weighted value of each loss term and ``"total"``, as floats, for the image
            the step started from.
        image: the current image, RGB in ``[0, 1]``, shape ``(B, 3, H, W)``; read-only (detached).
    """


@hookspec
def on_job_end(job: JobInfo, result: StyleResult | None, error: BaseException | None) -> None:
    """Called once when a job finishes, whether it succeeded or failed.

    Args:
        job: the job that ended.
        result: the :class:`nstkit.result.StyleResult`, or ``None`` if the job failed.
        error: the exception that ended the job, or ``None`` on success.
    """


HOOK_NAMES: tuple[str, ...] = (
    "register_extractors",
    "register_losses",
    "register_optimizers",
    "register_executors",
    "on_job_start",
    "on_step",
    "on_job_end",
)
