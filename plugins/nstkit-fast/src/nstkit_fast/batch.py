"""Running ``nstkit apply``'s jobs (every content image through one trained network) with
``nstkit run``'s semantics: skip finished outputs, write each output atomically, record each job
in ``OUT/manifest.jsonl`` (a failed image recorded with its error, the others going on), shards,
and Ray tasks.

A job's "style" is the model file (its sha256 is recorded and checked as a style image's is),
and its recipe is the model's recipe with what changes the result here added
(:func:`model_recipe`): a finished output is redone when the model, the size, the colour
option or the tiling changes.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nstkit.components import memory_format, resolve_device
from nstkit.config import RecipeConfig
from nstkit.errors import NstkitError
from nstkit.image import load_image, print_info, resize_longest, save_image
from nstkit.recipe import Recipe
from nstkit.runner.execute import SAVE_OPTIONS
from nstkit.runner.manifest import ManifestWriter, file_sha256
from nstkit.runner.plan import Job, plan_jobs
from nstkit.runner.record import InputHashes, JobRecorder, Outcome, RunSummary
from nstkit_fast.inference import DEFAULT_TILE, needs_tiles, stylise
from nstkit_fast.modelfile import FastModel, load_model

TAG = "fast"
"""The last part of an output's name: ``<photo>__<model>__fast.png``."""


@dataclass
class ApplyOptions:
    """How to apply a model (what it makes is the model's business).

    Attributes:
        out: the output folder; nothing is written outside it.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        batch_size: same-size images stylised together.
        size: longest side of the outputs (``None``: each photo's own size).
        tile: images of more than ``tile x tile`` pixels go through in tiles (``None``:
            never).
        preserve_colour: ``luminance``, ``linear``, ``histogram`` or ``None``
            (:func:`nstkit_fast.inference.stylise`).
        format: the outputs' format (``png``, ``jpg``, ``webp``, ``tiff``).
        fail_fast: stop after the first failed job.
        shard: ``(I, N)`` when this process runs shard ``I`` of ``N``.
    """

    out: Path
    device: str = "auto"
    batch_size: int = 1
    size: int | None = None
    tile: int | None = DEFAULT_TILE
    preserve_colour: str | None = None
    format: str = "png"
    fail_fast: bool = False
    shard: tuple[int, int] | None = None


def model_recipe(model: FastModel, options: ApplyOptions) -> Recipe:
    """The recipe ``apply``'s records carry: the model's training recipe named after the model,
    with the output ``size``, ``preserve_colour`` and format of this run, and a ``model`` key
    (its sha256, network and the tiling), all of which the recipe's hash covers."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", model.name).lstrip("._-") or "model"
    data = {**model.recipe, "name": name, "size": options.size,
            "preserve_colour": options.preserve_colour,
            "output": {**model.recipe.get("output", {}), "format": options.format}}
    data.pop("model", None)
    try:
        config = RecipeConfig.model_validate(data)
    except Exception as exc:
        raise NstkitError(f"{model.path}: the recorded recipe is not valid here ({exc})"
                          ) from None
    data["model"] = {"sha256": model.sha256, "network": model.settings.as_dict(),
                     "style_sha256": model.style.get("sha256"), "tile": options.tile}
    return Recipe(data, config, f"{model.path} (nstkit-fast model)")


def plan_apply(contents: Sequence[Path], model_path: Path, suffix: str) -> list[Job]:
    """One job per content image, named ``<photo>__<model>__fast.<suffix>`` (colliding names
    get a hash, as ``nstkit run``'s)."""
    return plan_jobs(contents, [model_path], TAG, suffix)


class Applier:
    """Runs jobs through one model in this process, batch by batch, recording each.

    Args:
        model: the loaded model.
        recipe: :func:`model_recipe` of it.
        options: how to run.
        recorder: where each outcome goes.
        check_style: a style sha256 every job's ``style`` must have (``nstkit compare``: the
            style image the model was trained on); ``None``: the jobs' style is the model.
    """

    def __init__(self, model: FastModel, recipe: Recipe, options: ApplyOptions,
                 recorder: JobRecorder, check_style: str | None = None) -> None:
        self.model, self.recipe, self.options, self.recorder = model, recipe, options, recorder
        self.device = resolve_device(options.device)
        self.net = model.net.to(self.device, memory_format=memory_format(self.device))
        self.check_style = check_style

    @property
    def summary(self) -> RunSummary:
        return self.recorder.summary

    def run(self, jobs: Sequence[Job]) -> RunSummary:
        """Every job, ``batch_size`` at a time; Ctrl-C stops with ``summary.interrupted``
        (the batch in progress gets no record)."""
        try:
            for start in range(0, len(jobs), self.options.batch_size):
                self.run_group(list(jobs[start:start + self.options.batch_size]))
                if self.options.fail_fast and self.summary.count("failed"):
                    break
        except KeyboardInterrupt:
            self.summary.interrupted = True
        return self.summary

    def run_group(self, group: list[Job]) -> None:
        """Load the group's images (an unreadable one fails alone), then stylise them by
        size."""
        loaded: dict[tuple[int, ...], list[tuple[Job, torch.Tensor]]] = {}
        for job in group:
            begun = time.perf_counter()
            try:
                self._check_style(job)
                image = resize_longest(load_image(job.content), self.options.size)
            except Exception as exc:
                self.recorder.failed([job], exc, time.perf_counter() - begun)
                continue
            loaded.setdefault(tuple(image.shape), []).append((job, image))
        for items in loaded.values():
            self.run_batch([job for job, _ in items], torch.cat([image for _, image in items]))

    def _check_style(self, job: Job) -> None:
        if self.check_style is None:
            return
        if self.recorder.hashes(job.style) != self.check_style:
            raise NstkitError(f"the model was trained on another style "
                              f"({self.model.style.get('name')}), not {job.style.name}")

    def run_batch(self, jobs: list[Job], content: torch.Tensor) -> None:
        """Stylise ``content`` ``(B, 3, H, W)`` (the jobs' images, one size) and save each; out
        of CUDA memory, one at a time, then in tiles half the size."""
        start = time.perf_counter()
        tile = self.options.tile
        while True:
            try:
                fmt = memory_format(self.device)
                out = stylise(self.net, content.to(self.device, memory_format=fmt), tile=tile,
                              preserve_colour=self.options.preserve_colour).cpu()
                break
            except torch.cuda.OutOfMemoryError as exc:
                torch.cuda.empty_cache()
                if len(jobs) > 1:
                    for index, job in enumerate(jobs):
                        self.run_batch([job], content[index:index + 1])
                    return
                side = max(content.shape[-2:])
                if tile is None or tile >= side:
                    tile = side // 2 // 4 * 4
                elif tile > 128:
                    tile = tile // 2 // 4 * 4
                else:
                    self.recorder.failed(jobs, exc, time.perf_counter() - start,
                                         "try a smaller --size or --tile, or --device cpu")
                    return
            except Exception as exc:
                self.recorder.failed(jobs, exc, time.perf_counter() - start)
                return
        seconds = (time.perf_counter() - start) / len(jobs)
        self.finish(jobs, out, seconds, tiled=needs_tiles(content, tile))

    def finish(self, jobs: list[Job], out: torch.Tensor, seconds: float, tiled: bool) -> None:
        """Save each output (atomically, with its photo's ICC profile and resolution) and
        record it; a failed save fails its job."""
        output = self.recipe.data["output"]
        options = {key: output[key] for key in SAVE_OPTIONS[self.options.format]
                   if key in output}
        for index, job in enumerate(jobs):
            target = self.options.out / job.output
            try:
                save_image(out[index], target, **options, **print_info(job.content).options())
                digest = file_sha256(target)
            except Exception as exc:
                self.recorder.failed([job], exc, seconds)
                continue
            self.recorder.done(job, seconds, {}, size=list(out.shape[-2:]),
                               batch_size=len(jobs), tiled=tiled, output_sha256=digest,
                               model={"name": self.model.name, "sha256": self.model.sha256})


def recorder_for(recipe: Recipe, options: ApplyOptions, report: Callable[[Outcome], None],
                 hashes: InputHashes | None = None,
                 worker: dict[str, Any] | None = None) -> JobRecorder:
    return JobRecorder(recipe, str(resolve_device(options.device)),
                       ManifestWriter(options.out, options.shard), report,
                       shard=options.shard, worker=worker, hashes=hashes)


def run_local(model: FastModel, recipe: Recipe, jobs: Sequence[Job], options: ApplyOptions,
              report: Callable[[Outcome], None], hashes: InputHashes | None = None,
              check_style: str | None = None) -> RunSummary:
    """Run the jobs in this process; each recorded in ``options.out``'s manifest."""
    options.out.mkdir(parents=True, exist_ok=True)
    recorder = recorder_for(recipe, options, report, hashes)
    return Applier(model, recipe, options, recorder, check_style).run(jobs)


# --- Ray: a remote task per batch ---------------------------------------------------------------


class _Records(list):
    """A record sink a Ray task sends back to the driver."""


def _remote_batch(model_path: str, recipe: Recipe, jobs: list[Job], options: ApplyOptions,
                  check_style: str | None, env: dict[str, str]) -> list[dict[str, Any]]:
    """A Ray task: one batch of jobs; returns their manifest records."""
    os.environ.update(env)
    import socket

    sink = _Records()
    model = load_model(model_path)
    device = resolve_device(options.device)
    recorder = JobRecorder(recipe, str(device), sink, shard=options.shard,
                           worker={"engine": "ray", "host": socket.gethostname(),
                                   "pid": os.getpid()})
    Applier(model, recipe, options, recorder, check_style).run(jobs)
    return list(sink)


def run_ray(model: FastModel, recipe: Recipe, jobs: Sequence[Job], options: ApplyOptions,
            report: Callable[[Outcome], None], address: str | None = None,
            hashes: InputHashes | None = None, check_style: str | None = None) -> RunSummary:
    """Run the jobs as Ray tasks of ``batch_size`` jobs each (one CPU each, or one GPU each on
    a cluster with GPUs unless ``--device cpu``); the driver writes the records as the tasks
    finish. The model file and the output folder must be reachable by every worker (a local
    cluster, or a shared file system)."""
    import ray

    from nstkit.executors.ray import connect, short_error, task_options, worker_env

    options.out.mkdir(parents=True, exist_ok=True)
    recorder = recorder_for(recipe, options, report, hashes)
    if not jobs:
        return recorder.summary
    started = connect(address)
    pending: dict[Any, tuple[list[Job], float]] = {}
    try:
        remote = ray.remote(_remote_batch).options(max_retries=0,
                                                    **task_options(options.device))
        sent = dataclasses.replace(options, out=options.out.resolve(),
                                   device="cuda" if options.device.startswith("cuda")
                                   else options.device)
        env = worker_env()
        assert model.path is not None
        path = str(model.path.resolve())
        for start in range(0, len(jobs), options.batch_size):
            group = [dataclasses.replace(job, content=job.content.resolve(),
                                         style=job.style.resolve())
                     for job in jobs[start:start + options.batch_size]]
            ref = remote.remote(path, recipe, group, sent, check_style, env)
            pending[ref] = (list(jobs[start:start + options.batch_size]), time.perf_counter())
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for ref in ready:
                group, begun = pending.pop(ref)
                try:
                    records = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    recorder.failed(group, RuntimeError(short_error(exc)),
                                    time.perf_counter() - begun)
                    continue
                by_output = {job.output: job for job in group}
                for record in records:
                    job = by_output[record["output"]]
                    record["content"]["path"] = str(job.content)  # as the driver named it
                    record["style"]["path"] = str(job.style)
                    recorder.add(Outcome(job, record["status"], record["wall_time"],
                                         error=record.get("error")), record)
            if options.fail_fast and recorder.summary.count("failed"):
                break
    except KeyboardInterrupt:
        recorder.summary.interrupted = True
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
    return recorder.summary
