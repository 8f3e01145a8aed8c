"""The optimisation loop: built components in, optimised image and loss history out.

Knows nothing of files, recipes or plugins' names; reports progress through ``notify``.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from nstkit.errors import LossError
from nstkit.extractors import FeatureExtractor
from nstkit.losses import LossTerm, Targets
from nstkit.losses.base import fit_guides
from nstkit.optim import IterateAverage

Notify = Callable[..., None]


def extract(extractor: FeatureExtractor, image: torch.Tensor, layers: Sequence[str],
            precision: str = "fp32") -> dict[str, torch.Tensor]:
    """``extractor(image, layers)``; with ``precision="bf16"`` the extractor runs under bf16
    autocast and its features come back as float32, so the losses stay in float32."""
    if precision == "fp32":
        return extractor(image, layers)
    with torch.autocast(image.device.type, dtype=torch.bfloat16):
        features = extractor(image, layers)
    return {name: value.float() for name, value in features.items()}


@dataclass
class WeightedTerm:
    """A loss term in a stylisation: its label, weight and module."""

    name: str
    weight: float
    module: LossTerm
    plugin: str | None = None


def feature_layers(terms: Sequence[WeightedTerm], extractor: FeatureExtractor) -> list[str]:
    """Every layer any term reads, in forward order (binds terms to canonical names)."""
    for term in terms:
        term.module.bind(extractor.resolve)
    layers = {layer for term in terms for layer in term.module.layers}
    return sorted(layers, key=extractor.depth)


class StyleCache:
    """Style features kept across jobs, keyed by extractor, layers and the style's pixels.

    A batch over many content images computes each style's targets once per size.

    Args:
        max_items: how many style feature sets to keep (least recently used dropped first).
    """

    def __init__(self, max_items: int = 16) -> None:
        self.max_items = max_items
        self._items: OrderedDict[tuple, dict[str, torch.Tensor]] = OrderedDict()
        self.hits = self.misses = 0

    def features(self, extractor: FeatureExtractor, extractor_key: Hashable,
                 layers: Sequence[str], style: torch.Tensor) -> dict[str, torch.Tensor]:
        """``extractor(style, layers)``, computed once per distinct key."""
        digest = hashlib.blake2b(style.detach().cpu().contiguous().numpy().tobytes(),
                                 digest_size=16).hexdigest()
        key = (extractor_key, tuple(layers), tuple(style.shape), str(style.device),
               style.dtype, digest)
        if key in self._items:
            self.hits += 1
            self._items.move_to_end(key)
            return self._items[key]
        self.misses += 1
        self._items[key] = extractor(style, layers)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)
        return self._items[key]


@torch.no_grad()
def style_features(extractor: FeatureExtractor, layers: Sequence[str], style: torch.Tensor,
                   cache: StyleCache | None = None, extractor_key: Hashable = None,
                   precision: str = "fp32") -> dict[str, torch.Tensor]:
    """The features of one style image ``(1, 3, h, w)`` at ``layers``, shared through
    ``cache`` as :func:`compute_targets` shares them."""
    def run(image: torch.Tensor, wanted: Sequence[str]) -> dict[str, torch.Tensor]:
        return extract(extractor, image, wanted, precision)

    try:
        if cache is None:
            return run(style, layers)
        key = extractor_key if precision == "fp32" else (extractor_key, precision)
        return cache.features(run, key, layers, style)  # type: ignore[arg-type]
    except RuntimeError as exc:
        if "too small" not in str(exc):
            raise
        h, w = style.shape[-2:]
        raise ValueError(f"a {h}x{w} px style image is too small for layer {layers[-1]!r} "
                         f"(its pooling leaves nothing); use a larger size, style_scale or "
                         f"shallower layers") from None


@torch.no_grad()
def compute_targets(extractor: FeatureExtractor, layers: Sequence[str], content: torch.Tensor,
                    styles: Sequence[torch.Tensor], blend: Sequence[float],
                    cache: StyleCache | None = None,
                    extractor_key: Hashable = None, precision: str = "fp32",
                    guides: Mapping[str, torch.Tensor] | None = None) -> Targets:
    """Features of the content and of each style image, computed once per job.

    With a ``cache`` (and an ``extractor_key`` naming the extractor), style features are
    shared between jobs that use the same style image at the same size and ``precision``.
    ``guides`` are resized to the content's size (:func:`nstkit.losses.base.fit_guides`).
    """
    def run(image: torch.Tensor, wanted: Sequence[str]) -> dict[str, torch.Tensor]:
        return extract(extractor, image, wanted, precision)

    def style_features(style: torch.Tensor) -> dict[str, torch.Tensor]:
        if cache is None:
            return run(style, layers)
        key = extractor_key if precision == "fp32" else (extractor_key, precision)
        return cache.features(run, key, layers, style)  # type: ignore[arg-type]

    current = content  # the image being extracted, named in the error
    try:
        content_features = run(content, layers)
        every_style = []
        for current in styles:
            every_style.append(style_features(current))
    except RuntimeError as exc:
        if "too small" not in str(exc):
            raise
        h, w = current.shape[-2:]
        which = "image" if current is content else "style image"
        raise ValueError(f"a {h}x{w} px {which} is too small for layer {layers[-1]!r} (its "
                         f"pooling leaves nothing); use a larger size or shallower layers"
                         ) from None
    return Targets(
        content_image=content,
        content_features=content_features,
        style_images=list(styles),
        style_features=every_style,
        style_blend=list(blend),
        guides=fit_guides(guides, content),
    )


def check_scalar(term: WeightedTerm, value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        origin = f" (plugin {term.plugin!r})" if term.plugin else ""
        raise LossError(f"loss {term.name!r}{origin} must return a scalar tensor, got {shape}")
    return value.reshape(())


def start_terms(terms: Sequence[WeightedTerm], step: int) -> None:
    """Tell every term a new optimiser step begins (:meth:`nstkit.losses.LossTerm.start_step`);
    a plugin's module that is not a :class:`~nstkit.losses.LossTerm` may lack the method."""
    for term in terms:
        hook = getattr(term.module, "start_step", None)
        if hook is not None:
            hook(step)


class Evaluator(Protocol):
    """Computes the weighted term values and the total (and with ``backward`` the gradient)."""

    def start_step(self, step: int) -> None: ...

    def __call__(self, image: torch.Tensor, backward: bool = True) -> list[torch.Tensor]: ...


class WholeImage:
    """The loss of the whole image in one forward pass, and its gradient in one backward.

    Called as ``evaluate(image, backward)``: the weighted value of every term, then the total;
    with ``backward``, ``image.grad`` holds the total's gradient.
    """

    def __init__(self, terms: Sequence[WeightedTerm], extractor: FeatureExtractor,
                 layers: Sequence[str], precision: str = "fp32") -> None:
        self.terms, self.extractor = list(terms), extractor
        self.layers, self.precision = list(layers), precision

    def start_step(self, step: int) -> None:
        """Called before each optimiser step (a tiled evaluator moves its grid here); passed on
        to every term (:meth:`nstkit.losses.LossTerm.start_step`)."""
        start_terms(self.terms, step)

    def __call__(self, image: torch.Tensor, backward: bool = True) -> list[torch.Tensor]:
        with torch.set_grad_enabled(backward):
            features = extract(self.extractor, image, self.layers, self.precision)
            values = [term.weight * check_scalar(term, term.module(image, features))
                      for term in self.terms]
            total = torch.stack(values).sum()
        if backward:
            total.backward()
        return [*values, total]


def optimise(image: torch.Tensor, terms: Sequence[WeightedTerm], extractor: FeatureExtractor,
             layers: Sequence[str], optimizer: Any, iterations: int,
             notify: Notify | None = None, precision: str = "fp32",
             evaluate: Evaluator | None = None,
             ema: float | None = None) -> dict[str, list[float]]:
    """Minimise ``Σ weight · term`` over ``image`` in place, clamping it to ``[0, 1]``.

    Args:
        image: ``(B, 3, H, W)`` leaf tensor with ``requires_grad=True``, RGB in ``[0, 1]``.
        terms: the weighted loss terms, already prepared with their targets.
        extractor: the (truncated) feature extractor.
        layers: the layers to extract every step (see :func:`feature_layers`).
        optimizer: has ``step(closure)``; one call is one iteration.
        iterations: number of steps.
        notify: called as ``notify(step=, losses=, image=)`` after each step, with the losses
            of the image the step started from (a line search evaluates other points too);
            ``image`` is the iterate, also with ``ema``.
        precision: ``"fp32"``, or ``"bf16"`` for the extractor under bf16 autocast (see
            :func:`extract`).
        evaluate: how the loss and gradient are computed (default :class:`WholeImage`; a
            tiled stage passes :class:`nstkit.tiling.evaluate.TiledImage`).
        ema: with a decay in ``(0, 1)``, keep a bias-corrected exponential moving average of
            the iterates, the initial image included (:class:`nstkit.optim.IterateAverage`,
            updated after each step's clamp, as crowsonkb's style-transfer-pytorch does), and
            leave the average in ``image`` at the end: the result is the average, not the
            last iterate. Each call starts its own average (a multi-scale stage restarts it
            from its upsampled start, as crowsonkb does).

    Returns:
        The weighted value of every term and ``"total"``: entry ``k`` is the loss of the image
        before step ``k + 1`` (entry 0 the initial image; the iterates, with ``ema`` too), the
        last entry that of the result (with ``ema``, the average's); ``iterations + 1``
        entries in all.

    Raises:
        LossError: a term returned a non-scalar, or the loss became NaN or infinite.
    """
    names = [term.name for term in terms] + ["total"]
    history: dict[str, list[float]] = {name: [] for name in names}
    first: list[torch.Tensor] = []
    evaluate = evaluate or WholeImage(terms, extractor, layers, precision)
    average = IterateAverage(image, ema) if ema is not None else None

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        values = evaluate(image, True)
        if not first:  # a line search evaluates more points; report where the step began
            first[:] = [value.detach() for value in values]
        return values[-1]

    def record(values: list[torch.Tensor], step: int) -> dict[str, float]:
        floats = torch.stack(values).tolist()
        bad = [name for name, v in zip(names, floats, strict=True) if not math.isfinite(v)]
        if bad:
            raise LossError(f"loss became non-finite at step {step} (terms: {', '.join(bad)})")
        for name, value in zip(names, floats, strict=True):
            history[name].append(value)
        return dict(zip(names, floats, strict=True))

    for step in range(1, iterations + 1):
        first.clear()
        evaluate.start_step(step)
        optimizer.step(closure)
        losses = record(first, step)
        with torch.no_grad():
            image.clamp_(0, 1)
        if average is not None:
            average.update(image)
        if notify is not None:
            notify(step=step, losses=losses, image=image.detach())
    if average is not None:
        with torch.no_grad():
            image.copy_(average.value().clamp_(0, 1))
    evaluate.start_step(iterations + 1)
    record(evaluate(image, False), iterations + 1)
    return history
