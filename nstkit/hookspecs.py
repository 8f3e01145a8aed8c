"""Every hook nstkit calls. Plugins implement them with ``@nstkit.hookimpl``.

Registration hooks receive a ``register`` callback, so the host can check names, record which
plugin registered what and report clashes on the spot::

    register(name, factory, *, description="", options=None)         # losses, optimisers
    register(name, factory, *, description="", options=None, layers=None)   # extractors

``factory`` is a callable or a ``"module:attribute"`` string imported when the component is
first built, so registering imports nothing heavy. ``options`` is a pydantic model of the
factory's options (subclass :class:`nstkit.config.Options`); without one, the options are read
from the factory's signature, which imports it. ``layers`` is a :class:`nstkit.layers.LayerTable`
of an extractor's layer names; without one they are learnt by building the extractor.

Call hooks with keyword arguments; a hook evolves by gaining parameters, never by renaming or
losing them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import torch
    import typer

    from nstkit.executors import Executor
    from nstkit.job import JobInfo
    from nstkit.recipe import Recipe
    from nstkit.result import StyleResult

hookspec = pluggy.HookspecMarker("nstkit")
hookimpl = pluggy.HookimplMarker("nstkit")

Register = Callable[..., None]


@hookspec
def register_extractors(register: Register) -> None:
    """Register feature extractors.

    Called the first time an extractor is looked up, and again after every
    :meth:`PluginHost.add` or :meth:`PluginHost.remove` (registries are rebuilt then).

    Args:
        register: ``register(name, factory)``. ``factory(*, pooling="max", weights=None)``
            returns a :class:`nstkit.extractors.FeatureExtractor` (an ``nn.Module`` taking RGB
            in ``[0, 1]``, shape ``(B, 3, H, W)``, and returning a dict of named feature maps).

    Returns nothing. A name two plugins register is blocked, not raised here: looking it up
    raises ``ComponentClashError`` naming both plugins (their other components stay usable).
    """


@hookspec
def register_losses(register: Register) -> None:
    """Register loss terms.

    Called the first time a loss is looked up, and again after every :meth:`PluginHost.add`
    or :meth:`PluginHost.remove` (registries are rebuilt then).

    Args:
        register: ``register(name, factory)``. ``factory(*, layers=None, **options)`` returns a
            :class:`nstkit.losses.LossTerm`: ``layers`` is a mapping of extractor layer name to
            weight (or ``None`` for the term's default); the remaining options are the term's own.

    Returns nothing. A name two plugins register is blocked, not raised here: looking it up
    raises ``ComponentClashError`` naming both plugins (their other components stay usable).
    """


@hookspec
def register_optimizers(register: Register) -> None:
    """Register optimisers.

    Called the first time an optimiser is looked up, and again after every
    :meth:`PluginHost.add` or :meth:`PluginHost.remove` (registries are rebuilt then).

    Args:
        register: ``register(name, factory)``. ``factory(params, **options)`` returns an object
            with ``step(closure) -> Tensor`` like ``torch.optim.Optimizer``; one ``step`` call is
            one iteration. ``params`` is a list holding the image tensor being optimised.

    Returns nothing. A name two plugins register is blocked, not raised here: looking it up
    raises ``ComponentClashError`` naming both plugins (their other components stay usable).
    """


@hookspec
def register_executors(register: Register) -> None:
    """Register executors that run the jobs of ``nstkit run`` and ``nstkit compare``
    (``--engine NAME``).

    Called the first time an executor is looked up, and again after every
    :meth:`PluginHost.add` or :meth:`PluginHost.remove` (registries are rebuilt then).

    Args:
        register: ``register(name, factory)``. ``factory(*, address=None)`` returns a
            :class:`nstkit.executors.Executor` (``run(request) -> RunSummary``); ``address``
            is ``--address`` (an engine that connects nowhere raises ``NstkitError`` when given
            one). Import heavy or optional dependencies inside the factory, not at import time.

    Returns nothing. A name two plugins register is blocked, not raised here: looking it up
    raises ``ComponentClashError`` naming both plugins (their other components stay usable).
    """


@hookspec
def register_commands(cli: typer.Typer) -> None:
    """Add commands to the ``nstkit`` command line.

    Called once when the command line starts (``nstkit --help`` included), so the module
    that implements it should import only typer at the top and everything heavy (torch)
    inside the commands.

    Args:
        cli: the ``nstkit`` :class:`typer.Typer` app: ``@cli.command()`` adds a command,
            ``cli.add_typer(sub, name=...)`` a group. A name already taken (by the core or an
            earlier plugin) is dropped and reported for the plugin; the first command stays.
    """


@hookspec(firstresult=True)
def compare_variant(ref: str, sets: list[str]) -> tuple[Recipe, Executor] | None:
    """Claim one of ``nstkit compare``'s RECIPES arguments as a variant that is not a recipe
    optimised image by image (a trained model file, say); first non-``None`` result wins.

    Called by ``nstkit compare`` once per RECIPES argument (and sweep value), before it is
    read as a recipe.

    Args:
        ref: the argument as given (``wave.safetensors``).
        sets: the ``--set`` items, the run options (``size=256``) and the sweep value the
            comparison applies to this variant, as ``key.path=value`` strings.

    Returns:
        ``None`` to leave ``ref`` to the recipe loader, or ``(recipe, executor)``: the recipe
        the variant's outputs are named, recorded and hashed under (its ``name`` names them,
        its ``hash`` decides which are done, in its run folder or a ``--reuse`` one), and the
        executor that makes its jobs instead of ``--engine``'s, under the engine contract
        (one manifest record per job in ``options.out``, outputs written atomically).
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
    "register_commands",
    "compare_variant",
    "on_job_start",
    "on_step",
    "on_job_end",
)
