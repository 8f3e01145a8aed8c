"""Helpers for the tests of nstkit plugins: a host with only your plugin, tiny generated images,
small real photos as files, a tiny stand-in for VGG19 (and a plugin registering it as the
extractor ``tiny``), and contract checks for loss terms and optimisers.

Everything here is self-contained (no downloads, no GPU; only :func:`sample_images` writes
files, where you ask it to), so a plugin's tests run anywhere nstkit is installed::

    from nstkit.testing import check_loss, make_host
    import nstkit_brightness

    def test_contract():
        check_loss(nstkit_brightness.Brightness, options={"target": 0.3})

    def test_registered():
        assert "brightness" in make_host(nstkit_brightness).losses

Each ``check_*`` raises :class:`AssertionError` with a message saying what broke.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import math
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from nstkit.extractors import FeatureExtractor
from nstkit.hookspecs import Register, hookimpl
from nstkit.layers import vgg_aliases, vgg_layer_names
from nstkit.losses.base import (
    STYLE_FIELDS,
    LayerSpec,
    LossTerm,
    Recording,
    Region,
    StatisticLoss,
    Targets,
    fit_guides,
)
from nstkit.optimisation import compute_targets
from nstkit.plugins import PluginHost, get_host
from nstkit.result import StyleResult
from nstkit.samples import sample_images

__all__ = [
    "TinyExtractor",
    "TinyExtractorPlugin",
    "TinyImages",
    "add_tiny_extractor",
    "check_loss",
    "check_optimizer",
    "make_host",
    "modules_after",
    "sample_images",
    "stylize_tiny",
    "tiny_images",
]

T = TypeVar("T")
DeviceLike = str | torch.device


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one CPU thread, then restore the setting.

    The helpers' tensors are tiny: one thread is faster than several, and is not stalled
    (by a factor of 100 in our measurements) when other processes keep the cores busy.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def modules_after(code: str, watch: Iterable[str] = ("torch", "numpy", "scipy")) -> list[str]:
    """Which of the modules ``watch`` a fresh Python interpreter has imported after running
    ``code``, sorted: for testing that an entry-point module stays light (the lazy pattern of
    docs/plugins.md), e.g. ``assert modules_after("import my_plugin.plugin") == []``.

    Raises:
        AssertionError: ``code`` failed (its stderr is the message).
    """
    names = tuple(watch)
    probe = f"import sys\n{code}\nprint(sorted(m for m in {names!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return ast.literal_eval(done.stdout.strip().splitlines()[-1])


def make_host(*plugins: object | str) -> PluginHost:
    """A plugin host with the built-ins and ``plugins`` only: installed entry points are ignored.

    Args:
        plugins: plugin modules, objects carrying ``@nstkit.hookimpl`` functions, or module
            names (imported; a failing import raises :class:`nstkit.errors.PluginError`).
    """
    return PluginHost(plugins=plugins, autoload=False)


# --- tiny images -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TinyImages:
    """Generated test images, RGB in ``[0, 1]``.

    Attributes:
        content: ``(1, 3, size, size)``: a sky, a sun and a hill (smooth areas and edges).
        styles: two ``(1, 3, 3 * size // 4, size)`` textures (diagonal waves, a tile mosaic);
            deliberately not the content's shape, as real style images rarely are.
    """

    content: torch.Tensor
    styles: tuple[torch.Tensor, ...]

    @property
    def style(self) -> torch.Tensor:
        """The first style image, ``(1, 3, 3 * size // 4, size)``."""
        return self.styles[0]


def _grid(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``y`` (0 at the top, 1 at the bottom) and ``x`` (0 left, 1 right), each ``(h, w)``."""
    y = torch.linspace(0, 1, h, dtype=torch.float64).view(h, 1).expand(h, w)
    x = torch.linspace(0, 1, w, dtype=torch.float64).view(1, w).expand(h, w)
    return y, x


def _landscape(h: int, w: int) -> torch.Tensor:
    y, x = _grid(h, w)
    image = torch.stack([0.45 + 0.3 * y, 0.6 + 0.2 * y, 0.95 - 0.2 * y])
    ground = y > 0.6 + 0.08 * torch.sin(3 * math.pi * x)
    hill = torch.stack([0.25 + 0.2 * x, 0.5 + 0.15 * torch.sin(6 * x), 0.2 + 0 * x])
    image = torch.where(ground, hill, image)
    sun = (x - 0.72) ** 2 + (y - 0.28) ** 2 < 0.015
    return torch.where(sun, torch.tensor([1.0, 0.85, 0.3], dtype=torch.float64).view(3, 1, 1),
                       image)


def _waves(h: int, w: int) -> torch.Tensor:
    y, x = _grid(h, w)
    t = (torch.sin(2 * math.pi * (3 * x + 2 * y) + 2 * torch.sin(4 * math.pi * y)) + 1) / 2
    navy = torch.tensor([0.1, 0.15, 0.4], dtype=torch.float64).view(3, 1, 1)
    cream = torch.tensor([0.95, 0.9, 0.75], dtype=torch.float64).view(3, 1, 1)
    return navy + (cream - navy) * t


def _mosaic(h: int, w: int, tile: int = 6) -> torch.Tensor:
    palette = torch.tensor([[0.8, 0.2, 0.1], [0.9, 0.7, 0.1], [0.1, 0.4, 0.7], [0.2, 0.6, 0.3]],
                           dtype=torch.float64)
    i = torch.arange(h).view(h, 1).expand(h, w)
    j = torch.arange(w).view(1, w).expand(h, w)
    ti, tj = i // tile, j // tile
    image = palette[(ti * 3 + tj * 5 + ti * tj) % len(palette)].permute(2, 0, 1)
    grout = (i % tile == 0) | (j % tile == 0)
    return torch.where(grout, torch.full_like(image, 0.15), image)


def tiny_images(size: int = 32, *, device: DeviceLike = "cpu",
                dtype: torch.dtype = torch.float32) -> TinyImages:
    """Deterministic generated images for tests (no files, no randomness).

    Args:
        size: side of the content image in pixels (at least 8).

    Returns:
        :class:`TinyImages`: ``content`` ``(1, 3, size, size)`` and two ``styles``
        ``(1, 3, 3 * size // 4, size)``, RGB in ``[0, 1]``, on ``device`` in ``dtype``.
    """
    if size < 8:
        raise ValueError(f"size must be at least 8, got {size}")
    h = 3 * size // 4
    images = [_landscape(size, size), _waves(h, size), _mosaic(h, size)]
    out = [im.clamp(0, 1).unsqueeze(0).to(device=device, dtype=dtype) for im in images]
    return TinyImages(out[0], tuple(out[1:]))


# --- tiny extractor ----------------------------------------------------------------------------


def _conv(in_channels: int, out_channels: int, generator: torch.Generator) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
    std = math.sqrt(2.0 / (in_channels * 9))
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * std)
        conv.bias.copy_(torch.randn(out_channels, generator=generator) * 0.1 - 0.5)
    return conv


class TinyExtractor(FeatureExtractor):
    """A small, deterministic stand-in for VGG19 with its layer names and Keras aliases.

    ``width``, ``2·width``, then ``4·width`` channels in blocks 1, 2 and 3-5; softplus instead
    of ReLU (the layers are still named ``reluB_I``) and average pooling, so the features are
    smooth functions of the image and gradchecks through them are reliable. Weights come from
    a fixed seed; nothing is downloaded.

    Args:
        width: channels of the first block.
        seed: seed of the weights.

    Shape:
        - Input: ``(B, 3, H, W)``, RGB in ``[0, 1]``.
        - Output: dict of layer name to ``(B, C_l, H / 2^(b-1), W / 2^(b-1))`` for the
          layers of block ``b`` (``poolB`` halves once more).
    """

    def __init__(self, *, width: int = 4, seed: int = 0) -> None:
        super().__init__()
        self.layer_names = vgg_layer_names("vgg19")
        self.aliases = vgg_aliases(self.layer_names)
        generator = torch.Generator().manual_seed(seed)
        modules: list[nn.Module] = []
        channels = 3
        for name in self.layer_names:
            if name.startswith("conv"):
                out = width * min(2 ** (int(name[4]) - 1), 4)
                modules.append(_conv(channels, out, generator))
                channels = out
            elif name.startswith("relu"):
                modules.append(nn.Softplus())
            else:
                modules.append(nn.AvgPool2d(2))
        self.features = nn.Sequential(*modules)
        self.requires_grad_(False)
        self.eval()

    def forward(self, image: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        """Feature maps of ``layers`` (names or aliases) for ``image`` ``(B, 3, H, W)``."""
        wanted = {self.depth(layer): self.resolve(layer) for layer in layers}
        out: dict[str, torch.Tensor] = {}
        x = image - 0.5
        for index, module in enumerate(self.features[: max(wanted, default=-1) + 1]):
            x = module(x)
            if index in wanted:
                out[wanted[index]] = x
        return out


def _tiny_extractor(pooling: str = "max", weights: str | None = None) -> TinyExtractor:
    """A tiny stand-in for VGG19 (tests); takes VGG19's options and ignores them."""
    return TinyExtractor()


class TinyExtractorPlugin:
    """A plugin registering :class:`TinyExtractor` as the extractor ``tiny``, so a recipe with
    ``extractor: {name: tiny}`` (its other options, such as ``pooling``, are ignored) runs a
    command end to end in milliseconds: ``make_host(my_plugin, TinyExtractorPlugin())``, or
    :func:`add_tiny_extractor` for the process-wide host the commands use."""

    @hookimpl
    def register_extractors(self, register: Register) -> None:
        register("tiny", _tiny_extractor)


def add_tiny_extractor(host: PluginHost | None = None) -> PluginHost:
    """Add :class:`TinyExtractorPlugin` (as the plugin ``tiny-extractor``) to ``host``, by
    default the process-wide one (:func:`nstkit.plugins.get_host`) that the commands use;
    nothing happens when the host already has an extractor ``tiny``.

    Returns:
        The host.
    """
    host = host if host is not None else get_host()
    if "tiny" not in host.extractors:
        host.add(TinyExtractorPlugin(), name="tiny-extractor")
    return host


@_one_thread()
def stylize_tiny(host: PluginHost | None = None, *, size: int = 32, iterations: int = 3,
                 **options: Any) -> StyleResult:
    """:func:`nstkit.stylize` on :func:`tiny_images` with a :class:`TinyExtractor` on the CPU.

    A quick end-to-end run for a plugin's tests: ``options`` are passed on (``losses=``,
    ``optimizer=``, ``optimizer_options=``, ``init=``, ``extractor=``...). ``host`` defaults
    to :func:`make_host` with no extra plugins. Runs on one CPU thread.

    Returns:
        The :class:`nstkit.StyleResult`; its ``image`` is ``(1, 3, size, size)`` in ``[0, 1]``.
    """
    from nstkit.stylisation import stylize

    images = tiny_images(size)
    options.setdefault("losses", [{"name": "content"}, {"name": "gram", "weight": 1.0}])
    options.setdefault("extractor", TinyExtractor())
    return stylize(images.content, list(images.styles), size=None, iterations=iterations,
                   device="cpu", host=host or make_host(), **options)


# --- contract checks ---------------------------------------------------------------------------


def _name(factory: Callable[..., Any]) -> str:
    return getattr(factory, "__qualname__", None) or getattr(factory, "__name__", repr(factory))


def _attempt(what: str, action: Callable[[], T]) -> T:
    """Run ``action``; turn any exception but an AssertionError into one saying ``what`` failed."""
    try:
        return action()
    except AssertionError:
        raise
    except Exception as exc:
        raise AssertionError(f"{what} raised {type(exc).__name__}: {exc}") from exc


def _check_loss_value(label: str, value: Any, image: torch.Tensor) -> torch.Tensor:
    """Assert ``value`` is a finite differentiable scalar on ``image``'s device and dtype."""
    if not isinstance(value, torch.Tensor):
        raise AssertionError(f"{label}: forward returned {type(value).__name__}, not a tensor")
    if value.numel() != 1:
        raise AssertionError(f"{label}: forward must return a scalar tensor, "
                             f"got shape {tuple(value.shape)}")
    if value.device != image.device:
        raise AssertionError(f"{label}: forward returned a tensor on {value.device}, "
                             f"but the image is on {image.device}")
    if value.dtype != image.dtype:
        raise AssertionError(f"{label}: forward returned {value.dtype} for a {image.dtype} image")
    if not torch.isfinite(value).all():
        raise AssertionError(f"{label}: forward returned a non-finite value ({value.item()})")
    if value.grad_fn is None:
        raise AssertionError(f"{label}: the value is not differentiable (no grad_fn): was it "
                             "detached, made with .item() or computed under torch.no_grad()?")
    return value.reshape(())


def _check_loss_gradient(label: str, value: torch.Tensor, image: torch.Tensor) -> None:
    (grad,) = torch.autograd.grad(value, image, allow_unused=True)
    if grad is None:
        raise AssertionError(f"{label}: the value does not depend on the image")
    if not torch.isfinite(grad).all():
        raise AssertionError(f"{label}: the gradient with respect to the image is not finite")
    if not grad.any():
        raise AssertionError(f"{label}: the gradient with respect to the image is zero "
                             "everywhere, so no optimiser can lower this loss")


def _targets(extractor: FeatureExtractor, layers: list[str], size: int, batch: int,
             styles: int, device: torch.device, dtype: torch.dtype,
             guides: Mapping[str, torch.Tensor] | None = None,
             region: torch.Tensor | None = None) -> Targets:
    images = tiny_images(size, device=device, dtype=dtype)
    content = images.content.expand(batch, -1, -1, -1).contiguous()
    chosen = list(images.styles[:styles])
    blend = [1.0 / len(chosen)] * len(chosen)
    targets = compute_targets(extractor, layers, content, chosen, blend, guides=guides)
    if region is None:
        return targets
    weight = fit_guides({"region": region}, content)["region"].clamp(0, 1)
    return dataclasses.replace(targets, regions=[_region(targets, weight)])


def _test_image(targets: Targets) -> torch.Tensor:
    """Content blended with fixed noise: near the content, equal to no target."""
    content = targets.content_image
    noise = torch.rand(content.shape, generator=torch.Generator().manual_seed(0),
                       dtype=torch.float64).to(content)
    return (0.5 * content + 0.5 * noise).requires_grad_(True)


def _check_reads_style(label: str, term: LossTerm, read: bool) -> None:
    declared = type(term).reads_style
    if declared is not None and declared != read:
        did = "reads" if read else "does not read"
        raise AssertionError(f"{label}: reads_style is {declared}, but prepare {did} the "
                             f"style images or features; strength would scale it wrongly")


def _check_loss_forward(label: str, term: LossTerm, extractor: FeatureExtractor,
                        targets: Targets) -> torch.Tensor:
    """prepare, forward twice, gradient; returns the float64-ready test image."""
    recording = Recording(targets)
    _attempt(f"{label}: prepare(targets)", lambda: term.prepare(recording))  # type: ignore[arg-type]
    _check_reads_style(label, term, bool(recording.read & STYLE_FIELDS))
    image = _test_image(targets)
    before = image.detach().clone()
    layers = list(term.layers)
    features = extractor(image, layers)
    value = _attempt(f"{label}: forward(image, features) (features holds only the declared "
                     f"layers {layers})", lambda: term(image, features))
    value = _check_loss_value(label, value, image)
    if not torch.equal(image.detach(), before):
        raise AssertionError(f"{label}: forward modified the image in place")
    again = _attempt(f"{label}: a second forward", lambda: term(image, extractor(image, layers)))
    if not torch.allclose(value.detach(), again.detach().reshape(()), rtol=1e-5, atol=0):
        raise AssertionError(f"{label}: forward is not repeatable: {value.item()} then "
                             f"{again.item()} for the same image (state changed in forward?)")
    _check_loss_gradient(label, value, image)
    return image


def _region(targets: Targets, weight: torch.Tensor) -> Region:
    """A region of ``weight`` ``(1, 1, H, W)`` reading ``targets``' styles."""
    return Region("#ffffff", weight, list(targets.style_images), list(targets.style_features),
                  list(targets.style_blend), [None] * len(targets.style_images))


def _full_cover(targets: Targets) -> Targets:
    """``targets`` with one region covering the whole image, reading the same styles."""
    content = targets.content_image
    return dataclasses.replace(
        targets, regions=[_region(targets, content.new_ones(1, 1, *content.shape[-2:]))])


def _check_masks(label: str, term: LossTerm, extractor: FeatureExtractor,
                 targets: Targets) -> None:
    """A term declaring ``supports_masks = True``: its weighted statistics (a
    :class:`StatisticLoss`) weigh each position, and a mask covering everything gives the
    unmasked value."""
    declared = type(term).supports_masks
    if declared is not None and not isinstance(declared, bool):
        raise AssertionError(f"{label}: supports_masks must be True, False or None, got "
                             f"{declared!r}")
    if not declared:
        return
    from nstkit.losses.guided import GuidedStatistic

    targets = dataclasses.replace(targets, regions=None)
    image = _test_image(targets)
    layers = list(term.layers)
    features = extractor(image, layers)
    term.prepare(targets)
    unmasked = term(image, features).detach()
    if isinstance(term, StatisticLoss):
        half = {layer: value.new_zeros(1, 1, *value.shape[-2:]) for layer, value in
                features.items()}
        for value in half.values():
            value[..., : value.shape[-1] // 2] = 1
        weighted = _attempt(f"{label}: statistics(features, weights)",
                            lambda: term.statistics(features, half))
        cropped = term.statistics({layer: value[..., : value.shape[-1] // 2]
                                   for layer, value in features.items()})
        for layer, value in cropped.items():
            if not torch.allclose(weighted[layer], value, rtol=1e-6, atol=1e-9):
                raise AssertionError(f"{label}: statistics with weights 1 on the left half "
                                     f"and 0 on the right at {layer!r} differ from the "
                                     f"statistics of the left half; weights must multiply "
                                     f"each position's statistic")
        guided: LossTerm = GuidedStatistic(copy.deepcopy(term))
    else:
        guided = copy.deepcopy(term)
    _attempt(f"{label}: prepare(targets with one region covering everything)",
             lambda: guided.prepare(_full_cover(targets)))
    masked = _attempt(f"{label}: forward with one region covering everything",
                      lambda: guided(image, features))
    if not torch.allclose(masked.detach().reshape(()), unmasked.reshape(()), rtol=1e-6,
                          atol=0):
        raise AssertionError(f"{label}: with one region covering everything the value is "
                             f"{masked.item()}, unmasked {unmasked.item()}; a full mask "
                             f"must change nothing")


def _gradcheck(label: str, term: LossTerm, extractor: FeatureExtractor,
               image: torch.Tensor) -> None:
    layers = list(term.layers)
    point = image.detach().clone().requires_grad_(True)

    def loss(x: torch.Tensor) -> torch.Tensor:
        return term(x, extractor(x, layers)).reshape(())

    try:
        torch.autograd.gradcheck(loss, (point,), eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)
    except RuntimeError as exc:  # torch.autograd.GradcheckError
        first = str(exc).strip().splitlines()[0]
        raise AssertionError(f"{label}: gradcheck failed in float64 (the gradient autograd "
                             f"computes differs from finite differences): {first}") from exc


@_one_thread()
def check_loss(
    factory: Callable[..., LossTerm],
    *,
    layers: LayerSpec = None,
    options: Mapping[str, Any] | None = None,
    device: DeviceLike = "cpu",
    size: int = 32,
    batch: int = 2,
    styles: int = 2,
    extractor: FeatureExtractor | None = None,
    gradcheck: bool = True,
    guides: Mapping[str, torch.Tensor] | None = None,
    region: torch.Tensor | None = None,
) -> None:
    """Check that ``factory`` builds a loss term keeping nstkit's contract.

    The term is built as the registry does (``factory(layers=layers, **options)``), bound to
    the extractor's layer names and prepared with the targets of :func:`tiny_images` (``batch``
    copies of the content, ``styles`` style images blended equally), and must read the style
    images or features there exactly when its class declares ``reads_style = True`` (an
    undeclared ``None`` passes: the term then refuses ``strength``); then, in float32 and in
    float64 on ``device``, ``forward`` must return a finite scalar tensor of the image's dtype
    and device that is differentiable with a finite, non-zero gradient, must not modify the
    image, and must give the same value twice. A term declaring ``supports_masks = True`` must
    keep the mask contract in float64: a :class:`~nstkit.losses.StatisticLoss`'s
    ``statistics(features, weights)`` with weights 1 on the left half of each layer and 0 on
    the right must equal the statistics of the left half, and with one region covering
    everything (:attr:`nstkit.losses.Targets.regions`) the value must equal the unmasked
    one; ``supports_masks`` must be a bool or ``None``. Last, ``torch.autograd.gradcheck`` compares
    autograd's gradient with finite differences in float64 (``gradcheck=False`` skips it, for
    terms that are not differentiable everywhere). Runs on one CPU thread.

    Args:
        factory: the class or function the plugin registers.
        layers, options: passed to the factory.
        device: where to run.
        size: the content's side in pixels; styles are ``3 * size // 4`` by ``size``.
        extractor: the features to use (default: a :class:`TinyExtractor`).
        guides: per-job images the term reads in ``prepare`` (``stylize(guides=...)``), each
            ``(1 or batch, C, h, w)``; resized to the content's ``size x size`` and given in
            each dtype, as :class:`nstkit.losses.Targets.guides`.
        region: a styled region's weights ``(1, 1, h, w)`` in ``[0, 1]``, for a term that
            reads :attr:`nstkit.losses.Targets.regions` itself: the contract is checked with
            the targets of a masked job holding that one region (reading the same styles);
            resized to the content's ``size x size``.

    Raises:
        AssertionError: naming the factory and the broken part of the contract.
    """
    label = _name(factory)
    dev = torch.device(device)
    base = extractor if extractor is not None else TinyExtractor()
    options = dict(options or {})
    term = _attempt(f"{label}: factory(layers={layers!r}, **{options!r})",
                    lambda: factory(layers=layers, **options))
    if not isinstance(term, LossTerm):
        raise AssertionError(f"{label}: the factory returned {type(term).__name__}, "
                             "not an nstkit.losses.LossTerm")
    _attempt(f"{label}: bind(resolve)", lambda: term.bind(base.resolve))
    term.to(dev)
    image = None
    for dtype in (torch.float32, torch.float64):
        ext = copy.deepcopy(base).to(device=dev, dtype=dtype)
        targets = _attempt(f"{label}: computing targets for layers {list(term.layers)}",
                           lambda ext=ext, dtype=dtype: _targets(  # type: ignore[misc]
                               ext, list(term.layers), size, batch, styles, dev, dtype,
                               guides, region))
        image = _check_loss_forward(f"{label} ({dtype})", term, ext, targets)
        if dtype == torch.float64:
            _check_masks(f"{label} (float64)", term, ext, targets)
    if gradcheck and image is not None:
        _gradcheck(label, term, ext, image)


def _quadratic_problem(device: torch.device,
                       dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """A start point ``(1, 3, 8, 8)`` in ``[0, 1]`` and a target inside ``[0.25, 0.75]``."""
    generator = torch.Generator().manual_seed(0)
    start = torch.rand((1, 3, 8, 8), generator=generator, dtype=torch.float64)
    target = 0.25 + 0.5 * torch.rand((1, 3, 8, 8), generator=generator, dtype=torch.float64)
    return (start.to(device=device, dtype=dtype).requires_grad_(True),
            target.to(device=device, dtype=dtype))


def _check_step_result(label: str, result: Any, step: int) -> None:
    if result is None:
        raise AssertionError(f"{label}: step {step} returned None; step(closure) must return "
                             "the loss, as torch.optim optimisers do")
    value = float(result.detach().reshape(()) if isinstance(result, torch.Tensor) else result)
    if not math.isfinite(value):
        raise AssertionError(f"{label}: step {step} returned a non-finite loss ({value})")


def _check_param(label: str, param: torch.Tensor, dtype: torch.dtype, device: torch.device,
                 shape: torch.Size) -> None:
    if param.dtype != dtype or param.device != device or param.shape != shape:
        raise AssertionError(f"{label}: the image changed from {dtype} {tuple(shape)} on "
                             f"{device} to {param.dtype} {tuple(param.shape)} on {param.device}")
    if not param.requires_grad:
        raise AssertionError(f"{label}: the image no longer requires grad")
    if not torch.isfinite(param).all():
        raise AssertionError(f"{label}: the image holds non-finite values")


def _run_optimizer(label: str, factory: Callable[..., Any], options: dict[str, Any],
                   steps: int, reduction: float, device: torch.device,
                   dtype: torch.dtype) -> None:
    param, target = _quadratic_problem(device, dtype)
    shape = param.shape
    opt = _attempt(f"{label}: factory([image], **{options!r})", lambda: factory([param], **options))
    for method in ("step", "zero_grad"):
        if not callable(getattr(opt, method, None)):
            raise AssertionError(f"{label}: the factory returned {type(opt).__name__}, "
                                 f"which has no {method}() method")
    calls = [0]

    def closure() -> torch.Tensor:  # what nstkit.optimisation.optimise passes
        calls[0] += 1
        opt.zero_grad(set_to_none=True)
        loss = 0.5 * (param - target).pow(2).sum()
        loss.backward()
        return loss

    with torch.no_grad():
        initial = float(0.5 * (param - target).pow(2).sum())
    for step in range(1, steps + 1):
        before = calls[0]
        result = _attempt(f"{label}: step {step}", lambda: opt.step(closure))
        if calls[0] == before:
            raise AssertionError(f"{label}: step {step} did not call the closure; nstkit "
                                 "evaluates the loss only through it")
        _check_step_result(label, result, step)
        with torch.no_grad():
            param.clamp_(0, 1)  # as the engine does after every step
        _check_param(label, param, dtype, device, shape)
    with torch.no_grad():
        final = float(0.5 * (param - target).pow(2).sum())
    if not final <= reduction * initial:
        raise AssertionError(f"{label}: {steps} steps took the quadratic 0.5·Σ(x - t)² from "
                             f"{initial:.4g} to {final:.4g}, expected at most {reduction} times "
                             f"{initial:.4g}; check the update's sign and size (options "
                             f"{options!r})")


@_one_thread()
def check_optimizer(
    factory: Callable[..., Any],
    *,
    options: Mapping[str, Any] | None = None,
    steps: int = 20,
    reduction: float = 0.5,
    device: DeviceLike = "cpu",
) -> None:
    """Check that ``factory`` builds an optimiser keeping nstkit's contract.

    In float32 and float64 the optimiser is built as the engine builds it
    (``factory([image], **options)``) for a ``(1, 3, 8, 8)`` image and run for ``steps``
    steps on ``0.5·Σ(x - t)²`` (``t`` inside ``[0.25, 0.75]``) with the engine's closure (which
    calls ``zero_grad(set_to_none=True)``) and the engine's clamp to ``[0, 1]`` after each
    step. Every step must call the closure and return a finite loss, and must leave the image
    the same tensor (dtype, device, shape, ``requires_grad``) with finite values; at the end
    the loss must be at most ``reduction`` times the initial one. Runs on one CPU thread.

    Raises:
        AssertionError: naming the factory and the broken part of the contract.
    """
    label = _name(factory)
    dev = torch.device(device)
    for dtype in (torch.float32, torch.float64):
        _run_optimizer(f"{label} ({dtype})", factory, dict(options or {}), steps, reduction,
                       dev, dtype)
