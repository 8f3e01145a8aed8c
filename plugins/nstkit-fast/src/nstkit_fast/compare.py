"""A trained model as a variant of ``nstkit compare`` (the ``compare_variant`` hook): its
outputs are made by the network (``nstkit apply``'s runner) and judged like every recipe's.

``nstkit compare fast great_wave.safetensors --content photos/ --style great_wave.jpg ...``
puts the optimised ``fast`` recipe and the network side by side. Of the comparison's options,
``--size`` applies to the model (the outputs' longest side); the others (``--iterations``,
``--set``, ``--strength``, sweeps) change nothing a trained network does and are ignored for
it. Pairs whose style is not the one the model was trained on fail, naming the model's style.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from nstkit.errors import NstkitError
from nstkit.recipe import Recipe
from nstkit_fast.batch import ApplyOptions, model_recipe, run_local
from nstkit_fast.modelfile import load_model

if TYPE_CHECKING:
    from nstkit.executors import RunRequest
    from nstkit.runner.record import RunSummary


def _size(sets: list[str], default: int | None) -> int | None:
    """The last ``size=N`` (or ``size=null``) of ``sets``, else ``default``."""
    size = default
    for item in sets:
        key, _, value = item.partition("=")
        if key.strip() == "size":
            text = value.strip()
            if text in ("null", "None", "~", ""):
                size = None
                continue
            try:
                size = int(text)
            except ValueError:
                raise NstkitError(f"size={text!r}: the model's outputs need a whole number of "
                                  f"pixels") from None
    return size


@dataclasses.dataclass
class ModelExecutor:
    """An engine (:class:`nstkit.executors.Executor`) that makes a comparison's jobs with a
    trained model: each content image through the network, at the variant's size."""

    path: Path
    options: ApplyOptions

    def run(self, request: RunRequest) -> RunSummary:
        model = load_model(self.path)
        run = request.options
        options = dataclasses.replace(self.options, out=run.out, device=run.device,
                                      batch_size=run.batch_size, fail_fast=run.fail_fast,
                                      shard=run.shard)
        return run_local(model, request.recipe, request.jobs, options, request.report,
                         check_style=model.style.get("sha256"))


def model_variant(ref: str, sets: list[str]) -> tuple[Recipe, ModelExecutor]:
    """The recipe a model's outputs are recorded under, and the executor that makes them.

    Raises:
        ModelFileError: ``ref`` is not a usable model file.
    """
    model = load_model(ref)
    options = ApplyOptions(Path("."), size=_size(sets, model.recipe.get("size")),
                           format=model.recipe.get("output", {}).get("format", "png"))
    return model_recipe(model, options), ModelExecutor(Path(ref), options)
