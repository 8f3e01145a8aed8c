"""Training a :class:`~nstkit_fast.network.TransformNet` with a recipe's loss terms.

The recipe's terms, weights, extractor, ``strength`` and ``precision`` define the loss exactly
as they do for optimisation; only what is optimised differs (the network's weights, by Adam, on
batches of random photo crops, rather than one image's pixels). Each batch of crops is the
content: terms that read the content (:data:`nstkit.losses.base.PLACE_FIELDS`) are prepared
again for every batch; the style's features are computed once.

Checkpoints (``MODEL.checkpoint.safetensors``: network, Adam state and loss history as
tensors, the step and the training's key as metadata; nothing pickled) are written every
``checkpoint_every`` steps (with the model file and the loss curve) and on Ctrl-C; a rerun
resumes from the last one and, the batches being a function of the step, ends with the weights
an uninterrupted run has.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from nstkit.atomic import write_atomic
from nstkit.components import build_extractor, build_terms, fast_cuda, resolve_device
from nstkit.errors import LossError, NstkitError
from nstkit.extractors import FeatureExtractor
from nstkit.image import load_image, resize_longest, save_image
from nstkit.losses import Targets
from nstkit.losses.base import PLACE_FIELDS, Recording
from nstkit.optimisation import WeightedTerm, check_scalar, extract, feature_layers, start_terms
from nstkit.plugins import PluginHost, get_host
from nstkit.recipe import Recipe
from nstkit.runner.manifest import file_sha256
from nstkit.runner.record import versions
from nstkit_fast.modelfile import (
    CHECKPOINT_FORMAT,
    FastModel,
    ModelFileError,
    read_tensors,
    save_model,
)
from nstkit_fast.network import NetworkSettings, TransformNet
from nstkit_fast.photos import Photos
from nstkit_fast.plugin import SUFFIX


@dataclass
class TrainSettings:
    """How to train (what the loss is, is the recipe's business).

    Attributes:
        steps: Adam steps in all (a resumed run counts the steps already done).
        batch_size: crops per step.
        crop: side of the square crops, in pixels.
        size: longest side the photos are resized to before cropping (default: the recipe's
            ``size``, so the network learns the style at the scale it is applied at).
        style_size: longest side of the style image (default: ``size`` times the recipe's
            ``style_scale``, as optimisation resizes it).
        lr: Adam's learning rate.
        seed: seeds the network's initial weights and every batch.
        network: the network's width and residual blocks.
        checkpoint_every: steps between checkpoints (0: only at the end and on Ctrl-C).
        preview_every: steps between preview images (0: none).
        max_seconds: stop (with a checkpoint and a model) after this much training time.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    """

    steps: int = 2000
    batch_size: int = 4
    crop: int = 256
    size: int | None = None
    style_size: int | None = None
    lr: float = 1e-3
    seed: int = 0
    network: NetworkSettings = field(default_factory=NetworkSettings)
    checkpoint_every: int = 200
    preview_every: int = 0
    max_seconds: float | None = None
    device: str = "auto"

    def key(self) -> dict[str, Any]:
        """What a checkpoint must share with a run to be resumed by it (``steps``, the
        intervals, the time budget and the device may change)."""
        data = asdict(self)
        for name in ("steps", "checkpoint_every", "preview_every", "max_seconds", "device"):
            data.pop(name)
        return data


@dataclass
class StepReport:
    """What :func:`train` tells its caller after each step."""

    step: int
    steps: int
    losses: dict[str, float]
    images_per_second: float
    resumed_from: int


@dataclass
class TrainResult:
    """What a training run made."""

    model: Path
    steps: int
    resumed_from: int
    seconds: float
    history: dict[str, list[float]]
    skipped_photos: dict[str, str]
    stopped: str  # "steps", "time" or "interrupted"


def side_paths(model: Path) -> dict[str, Path]:
    """The files written next to ``MODEL.safetensors``: checkpoint, loss curve, previews."""
    stem = model.name.removesuffix(SUFFIX)
    return {"checkpoint": model.with_name(f"{stem}.checkpoint{SUFFIX}"),
            "curve": model.with_name(f"{stem}.losses.png"),
            "previews": model.with_name(f"{stem}.previews")}


class TrainingLoss:
    """The recipe's weighted terms as a function of a batch of outputs and their contents.

    Args:
        terms: the weighted terms (:func:`nstkit.components.build_terms`).
        extractor: the feature extractor (truncated to ``layers``).
        layers: every layer a term reads.
        style: ``(1, 3, h, w)`` style image on the extractor's device, RGB in ``[0, 1]``.
        precision: ``fp32`` or ``bf16`` (the extractor under bf16 autocast).
    """

    def __init__(self, terms: Sequence[WeightedTerm], extractor: FeatureExtractor,
                 layers: Sequence[str], style: torch.Tensor, precision: str = "fp32") -> None:
        self.terms, self.extractor, self.layers = list(terms), extractor, list(layers)
        self.precision = precision
        self.style = style
        with torch.no_grad():
            self.style_features = extract(extractor, style, self.layers, precision)
        self.per_batch: list[WeightedTerm] | None = None

    def targets(self, content: torch.Tensor) -> Targets:
        """Targets for a batch of contents ``(B, 3, H, W)``; the style's features cached."""
        with torch.no_grad():
            features = extract(self.extractor, content, self.layers, self.precision)
        return Targets(content_image=content, content_features=features,
                       style_images=[self.style], style_features=[self.style_features],
                       style_blend=[1.0])

    def prepare(self, content: torch.Tensor) -> None:
        """Prepare the terms for a batch: every term the first time (learning which read the
        content), then only those."""
        targets = self.targets(content) if self.per_batch is None or self.per_batch else None
        if self.per_batch is None:
            assert targets is not None
            self.per_batch = []
            for term in self.terms:
                recording = Recording(targets)
                term.module.to(content.device).prepare(recording)  # type: ignore[arg-type]
                if recording.read & PLACE_FIELDS:
                    self.per_batch.append(term)
            return
        for term in self.per_batch:
            term.module.prepare(targets)  # type: ignore[arg-type]

    def __call__(self, output: torch.Tensor) -> list[torch.Tensor]:
        """Each term's weighted value for ``output`` ``(B, 3, H, W)``, then the total."""
        features = extract(self.extractor, output, self.layers, self.precision)
        values = [term.weight * check_scalar(term, term.module(output, features))
                  for term in self.terms]
        return [*values, torch.stack(values).sum()]


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def run_key(recipe: Recipe, style_sha: str, photos: Photos, settings: TrainSettings) -> str:
    """The digest a checkpoint carries: the recipe, the style, the photos' names and the
    settings that change the result."""
    text = json.dumps([recipe.hash, style_sha, photos.digest(), settings.key()],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def write_curve(history: dict[str, list[float]], path: Path) -> Path:
    """The loss curves (each term and the total, smoothed over 1 % of the steps) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for name, values in history.items():
        if not values:
            continue
        window = max(1, len(values) // 100)
        t = torch.tensor(values, dtype=torch.float64)
        smooth = t.unfold(0, window, 1).mean(1) if len(values) >= window else t
        steps = range(window, window + len(smooth))
        ax.plot(steps, smooth.tolist(), label=name, linewidth=2 if name == "total" else 1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("weighted loss (moving average)")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return write_atomic(path, buffer.getvalue())


@contextlib.contextmanager
def _eval(net: TransformNet) -> Iterator[None]:
    was = net.training
    net.eval()
    try:
        yield
    finally:
        net.train(was)


def train(recipe: Recipe, style: Path, photos: Sequence[Path], model: Path,
          settings: TrainSettings, *, host: PluginHost | None = None,
          extractor: FeatureExtractor | None = None, restart: bool = False,
          report: Callable[[StepReport], None] | None = None,
          preview: Path | None = None) -> TrainResult:
    """Train a network with ``recipe``'s losses and ``style``; write ``model`` (and its
    checkpoint, loss curve and previews beside it).

    Args:
        recipe: the resolved recipe (its terms, weights, extractor, strength, precision, size).
        style: the style image.
        photos: the training photos.
        model: the model file to write (``.safetensors``).
        settings: how to train.
        host: the plugin host the recipe's components come from.
        extractor: a built extractor to use instead of the recipe's (tests).
        restart: ignore an existing checkpoint.
        report: called after each step.
        preview: the photo previews show (default: the first training photo).

    Raises:
        NstkitError: a checkpoint of a different training is in the way (without
            ``restart``), no photo can be read, or the style is unreadable.
        LossError: the loss became NaN or infinite.
        KeyboardInterrupt: after writing a checkpoint and the model.
    """
    host = host or get_host()
    config = recipe.config
    device = resolve_device(settings.device)
    size = settings.size or config.size or 512
    style_size = settings.style_size or max(16, round(size * config.style_scale))
    if settings.crop > size:
        raise NstkitError(f"the crop ({settings.crop} px) is larger than the photos' size "
                          f"({size} px): use a smaller --crop or a larger --size")
    paths = side_paths(model)
    data = Photos(photos, size, settings.crop)
    style_sha = file_sha256(style)
    key = run_key(recipe, style_sha, data, settings)
    with torch.random.fork_rng(devices=[]):  # seeded weights, the caller's RNG untouched
        torch.manual_seed(settings.seed)
        net = TransformNet(settings.network).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=settings.lr)
    ext = extractor or build_extractor(host, config.extractor.name, device,
                                       **config.extractor.options)
    terms = build_terms(host, config.losses, config.strength)
    layers = feature_layers(terms, ext)
    ext = ext.truncated(layers) if layers and hasattr(ext, "truncated") else ext
    ext = ext.to(device)
    style_image = resize_longest(load_image(style), style_size).to(device)
    loss = TrainingLoss(terms, ext, layers, style_image, config.precision)
    history: dict[str, list[float]] = {t.name: [] for t in terms} | {"total": []}
    step = _resume(paths["checkpoint"], key, net, optimizer, history, restart)
    resumed_from = step
    preview_image = resize_longest(load_image(preview or photos[0]), settings.crop * 2) \
        if settings.preview_every else None
    seconds = 0.0

    def write_model() -> None:
        info = {"steps": step, "batch_size": settings.batch_size, "crop": settings.crop,
                "size": size, "style_size": style_size, "lr": settings.lr,
                "seed": settings.seed, "photos": len(data.paths), "photos_digest":
                data.digest(), "skipped_photos": len(data.bad), "device": str(device),
                "precision": config.precision,
                "final_losses": {n: v[-1] for n, v in history.items() if v},
                "seconds_this_run": round(seconds, 1)}
        save_model(FastModel(net, recipe.data, recipe.hash,
                             {"name": style.name, "sha256": style_sha, "size": style_size},
                             info, versions() | {"nstkit-fast": _version()}), model)

    def finish(stopped: str) -> TrainResult:
        _checkpoint(paths["checkpoint"], key, net, optimizer, history, step)
        write_model()
        if any(history.values()):
            write_curve(history, paths["curve"])
        return TrainResult(model, step, resumed_from, seconds, history,
                           {str(p): e for p, e in data.bad.items()}, stopped)

    net.train()
    started = time.perf_counter()
    try:
        with fast_cuda(device):
            while step < settings.steps:
                if settings.max_seconds is not None and seconds >= settings.max_seconds:
                    return finish("time")
                begun = time.perf_counter()
                content = data.prefetched(settings.seed, step + 1, settings.batch_size)
                content = content.to(device, non_blocking=True)
                start_terms(terms, step + 1)
                loss.prepare(content)
                optimizer.zero_grad(set_to_none=True)
                with _autocast(device, config.precision):
                    output = net(content)
                values = loss(output.float())
                values[-1].backward()
                floats = torch.stack([v.detach() for v in values]).tolist()
                if not all(math.isfinite(v) for v in floats):
                    raise LossError(f"the training loss became non-finite at step {step + 1}; "
                                    f"lower --lr or the recipe's weights")
                optimizer.step()
                step += 1
                for name, value in zip(history, floats, strict=True):
                    history[name].append(value)
                elapsed = time.perf_counter() - begun
                seconds = time.perf_counter() - started
                if report is not None:
                    report(StepReport(step, settings.steps, dict(zip(history, floats,
                                                                     strict=True)),
                                      settings.batch_size / max(elapsed, 1e-9), resumed_from))
                if settings.checkpoint_every and step % settings.checkpoint_every == 0 \
                        and step < settings.steps:
                    _checkpoint(paths["checkpoint"], key, net, optimizer, history, step)
                    write_model()
                    write_curve(history, paths["curve"])
                if preview_image is not None and step % settings.preview_every == 0:
                    _preview(net, preview_image, device, paths["previews"], step)
    except KeyboardInterrupt:
        finish("interrupted")
        raise
    finally:
        data.close()
    return finish("steps")


def _preview(net: TransformNet, image: torch.Tensor, device: torch.device, folder: Path,
             step: int) -> None:
    """``folder/step-NNNNNN.jpg``: the preview photo and its stylised version side by side."""
    with torch.no_grad(), _eval(net):
        out = net(image.to(device)).cpu()
    folder.mkdir(parents=True, exist_ok=True)
    save_image(torch.cat([image, out], dim=-1)[0], folder / f"step-{step:06d}.jpg", quality=90)


def _checkpoint(path: Path, key: str, net: TransformNet, optimizer: torch.optim.Optimizer,
                history: dict[str, list[float]], step: int) -> None:
    """Write the training's state to ``path`` (safetensors, atomically): ``net/NAME`` the
    network's tensors, ``adam/I/FIELD`` the optimiser's per-parameter state, ``history/TERM``
    the losses so far (float64); the step and ``key`` as metadata."""
    from safetensors.torch import save

    tensors = {f"net/{name}": value.detach().cpu().contiguous()
               for name, value in net.state_dict().items()}
    for index, fields in optimizer.state_dict()["state"].items():
        for field_name, value in fields.items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"optimiser state {field_name!r} is not a tensor")
            tensors[f"adam/{index}/{field_name}"] = value.detach().cpu().contiguous()
    for name, values in history.items():
        tensors[f"history/{name}"] = torch.tensor(values, dtype=torch.float64)
    metadata = {"format": CHECKPOINT_FORMAT, "format_version": "1", "key": key,
                "step": str(step)}
    write_atomic(path, save(tensors, metadata=metadata))


def read_checkpoint(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """The metadata (``format``, ``key``, ``step``) and tensors of a checkpoint written by
    training.

    Raises:
        NstkitError: not a readable safetensors file, or not an nstkit-fast checkpoint.
    """
    try:
        metadata, tensors = read_tensors(path)
    except ModelFileError as exc:
        raise NstkitError(f"checkpoint {str(path)!r} cannot be read ({exc}); delete it or pass "
                          f"--restart") from None
    if metadata.get("format") != CHECKPOINT_FORMAT or not metadata.get("step", "").isdigit():
        raise NstkitError(f"{str(path)!r} is not an nstkit-fast checkpoint; delete it or pass "
                          f"--restart")
    return metadata, tensors


def _resume(path: Path, key: str, net: TransformNet, optimizer: torch.optim.Optimizer,
            history: dict[str, list[float]], restart: bool) -> int:
    """Load the checkpoint at ``path`` into ``net``, ``optimizer`` and ``history``; the step it
    was written at (0 without one, or with ``restart``)."""
    if restart or not path.exists():
        return 0
    metadata, tensors = read_checkpoint(path)
    if metadata.get("key") != key:
        raise NstkitError(f"checkpoint {str(path)!r} is of a different training (recipe, "
                          f"style, photos or settings differ); pass --restart to start over, "
                          f"or write the model elsewhere")
    parts: dict[str, dict[str, torch.Tensor]] = {"net": {}, "adam": {}, "history": {}}
    for name, value in tensors.items():
        kind, _, rest = name.partition("/")
        if kind not in parts:
            raise NstkitError(f"checkpoint {str(path)!r} holds an unexpected tensor {name!r}; "
                              f"pass --restart")
        parts[kind][rest] = value
    if set(parts["history"]) != set(history):
        raise NstkitError(f"checkpoint {str(path)!r} has other loss terms; pass --restart")
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in parts["adam"].items():
        index, _, field_name = name.partition("/")
        state.setdefault(int(index), {})[field_name] = value
    try:
        net.load_state_dict(parts["net"], strict=True)
        optimizer.load_state_dict({"state": state,
                                   "param_groups": optimizer.state_dict()["param_groups"]})
    except (RuntimeError, ValueError, KeyError) as exc:
        raise NstkitError(f"checkpoint {str(path)!r} does not fit the network ({exc}); pass "
                          f"--restart") from None
    for name in history:
        history[name][:] = parts["history"][name].tolist()
    return int(metadata["step"])


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("nstkit-fast")
    except metadata.PackageNotFoundError:
        return "unknown"
