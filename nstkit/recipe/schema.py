"""The recipe schema: its defaults, and a validator that reports every problem at once.

Component names and their options are checked against the plugin registry, so a third-party
loss is valid in a recipe as soon as its plugin is installed.
"""

from __future__ import annotations

import difflib
import inspect
import math
import re
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any

import torch

from nstkit.errors import NstkitError
from nstkit.layers import resolve_layer_spec
from nstkit.plugins import PluginHost
from nstkit.registry import Registry, factory_key, suggest

VERSION = 1
GATYS_STYLE_LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]

DEFAULTS: dict[str, Any] = {
    "version": VERSION,
    "name": None,
    "description": "",
    "extractor": {"name": "vgg19", "pooling": "max", "weights": None},
    "size": 512,
    "style_scale": 1.0,
    "seed": 0,
    "init": "content",
    "noise_scale": 0.1,
    "losses": [
        {"name": "content", "weight": 1.0, "layers": ["relu4_2"]},
        {"name": "gram", "weight": 1e-3, "layers": GATYS_STYLE_LAYERS},
    ],
    "preserve_colour": None,
    "optimizer": {"name": "lbfgs", "iterations": 500},
    "multiscale": None,
    "precision": "fp32",
    "output": {"format": "png", "quality": 95, "save_every": 0},
}
FILE_ONLY_KEYS = ("extends", "set")
INIT_CHOICES = ("content", "noise", "style")
PRESERVE_CHOICES = ("luminance", "linear", "histogram")
FORMATS = ("png", "jpg", "webp")
SCHEDULES = ("equal", "geometric")
PRECISION_CHOICES = ("fp32", "bf16")
WEIGHT_KEYWORDS = ("original", "torchvision", "random")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_NUMBER = 1e30
MAX_RATIO = 1e3
NESTED_KEYS = {"iterations": "optimizer.iterations", "pooling": "extractor.pooling",
               "weights": "extractor.weights", "format": "output.format",
               "save_every": "output.save_every", "quality": "output.quality",
               "scales": "multiscale.scales"}

Path_ = tuple[str | int, ...]


def format_path(path: Path_) -> str:
    """``("losses", 1, "weight")`` -> ``losses[1].weight``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(top level)"


def show(value: Any) -> str:
    """A value as the user wrote it, for messages: strings quoted, others as YAML scalars."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


def suggest_key(key: str) -> str:
    """The nested key name closest to ``key`` (``"iteration"`` -> ``"iterations"``)."""
    close = difflib.get_close_matches(key, list(NESTED_KEYS), n=1, cutoff=0.8)
    return close[0] if close else ""


def accepted_options(factory: Callable[..., Any], skip: int = 0) -> set[str] | None:
    """Keyword names ``factory`` accepts after its first ``skip`` parameters; ``None``: any."""
    try:
        params = list(inspect.signature(factory).parameters.values())[skip:]
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


class Validator:
    """Collects ``"<source>: <key path>: <problem>"`` lines for one resolved recipe.

    Args:
        host: the plugin host whose registries the component names are checked against.
        source: maps a key path to the file (or ``--set``) that gave it.
    """

    def __init__(self, host: PluginHost, source: Callable[[Path_], str]) -> None:
        self.host, self.source = host, source
        self.problems: list[str] = []
        self.resolve_layer: Callable[[str], str] | None = None
        self.extractor_name = "the extractor"

    def problem(self, path: Path_, message: str) -> None:
        self.problems.append(f"{self.source(path)}: {format_path(path)}: {message}")

    # -- scalar checks: each returns whether the value passed -------------------------------
    def number(self, path: Path_, value: Any, *, minimum: float | None = None,
               positive: bool = False, maximum: float | None = None) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.problem(path, f"must be a number, got {show(value)}")
            return False
        if abs(value) > MAX_NUMBER:
            self.problem(path, f"is out of range (|x| > {MAX_NUMBER:g}), got {show(value)[:20]}")
            return False
        if not math.isfinite(value):
            self.problem(path, f"must be a finite number, got {show(value)}")
        elif positive and value <= 0:
            self.problem(path, f"must be > 0, got {show(value)}")
        elif minimum is not None and value < minimum:
            self.problem(path, f"must be >= {show(minimum)}, got {show(value)}")
        elif maximum is not None and value > maximum:
            self.problem(path, f"must be <= {show(maximum)}, got {show(value)}")
        else:
            return True
        return False

    def integer(self, path: Path_, value: Any, *, minimum: int | None = None,
                maximum: int | None = None, nullable: bool = False) -> bool:
        if value is None and nullable:
            return True
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(path, f"must be an integer{' or null' if nullable else ''}, "
                               f"got {show(value)}")
            return False
        return self.number(path, value, minimum=minimum, maximum=maximum)

    def string(self, path: Path_, value: Any) -> bool:
        if not isinstance(value, str) or not value:
            self.problem(path, f"must be a non-empty string, got {show(value)}")
            return False
        return True

    def choice(self, path: Path_, value: Any, choices: tuple[str, ...],
               nullable: bool = False) -> bool:
        if (value is None and nullable) or value in choices:
            return True
        allowed = ", ".join(repr(c) for c in choices) + (" or null" if nullable else "")
        self.problem(path, f"must be one of {allowed}; got {show(value)}")
        return False

    def mapping(self, path: Path_, value: Any, allowed: tuple[str, ...] | None = None) -> bool:
        if not isinstance(value, Mapping):
            self.problem(path, f"must be a mapping, got {show(value)}")
            return False
        for key in value:
            if not isinstance(key, str):
                self.problem(path, f"keys must be strings, got {show(key)}")
            elif allowed is not None and key not in allowed:
                hint = suggest(key, list(allowed))
                nested = NESTED_KEYS.get(key) or NESTED_KEYS.get(suggest_key(key))
                if not path and nested:
                    hint = f" Did you mean {nested!r}?"
                self.problem((*path, key), f"unknown key.{hint} Allowed: {', '.join(allowed)}.")
        return True

    def component(self, path: Path_, registry: Registry, name: Any) -> bool:
        if not self.string(path, name):
            return False
        try:
            registry.entry(name)
        except NstkitError as exc:
            self.problem(path, str(exc))
            return False
        return True

    def options(self, path: Path_, options: Mapping[str, Any], factory: Callable[..., Any],
                what: str, skip: int = 0, reserved: tuple[str, ...] = ()) -> None:
        accepted = accepted_options(factory, skip)
        if accepted is None:
            return
        accepted -= set(reserved)
        for key in options:
            if isinstance(key, str) and key not in accepted:
                listed = ", ".join(sorted(accepted)) or "(none)"
                self.problem((*path, key), f"unknown option for {what}."
                                           f"{suggest(key, sorted(accepted))} Accepted: {listed}.")

    # -- the recipe ---------------------------------------------------------------------------
    def validate(self, data: Mapping[str, Any]) -> list[str]:
        """Check a resolved recipe (defaults, ``extends`` and ``--set`` applied)."""
        if not self.mapping((), data, tuple(DEFAULTS)):
            return self.problems
        if type(data.get("version")) is not int or data["version"] != VERSION:
            self.problem(("version",), f"unsupported version {show(data.get('version'))}; "
                                       f"this nstkit reads version {VERSION}")
        if data.get("name") is not None and (not isinstance(data["name"], str)
                                             or not NAME_PATTERN.match(data["name"])):
            self.problem(("name",), f"must be letters, digits, '.', '_' or '-', "
                                    f"got {show(data['name'])}")
        if not isinstance(data.get("description"), str):
            self.problem(("description",), f"must be a string, got {show(data['description'])}")
        self.extractor(data.get("extractor"))
        self.images(data)
        self.losses(data.get("losses"))
        self.optimizer(data.get("optimizer"))
        self.multiscale(data.get("multiscale"))
        self.choice(("precision",), data.get("precision"), PRECISION_CHOICES)
        self.output(data.get("output"))
        return self.problems

    def extractor(self, spec: Any) -> None:
        path: Path_ = ("extractor",)
        if not self.mapping(path, spec) or "name" not in spec:
            if isinstance(spec, Mapping):
                self.problem((*path, "name"), "is required")
            return
        if not self.component((*path, "name"), self.host.extractors, spec["name"]):
            return
        self.extractor_name = spec["name"]
        options = {k: v for k, v in spec.items() if k != "name"}
        factory = self.host.extractors.get(spec["name"])
        self.options(path, options, factory, f"extractor {spec['name']!r}")
        weights = options.get("weights")
        if weights is not None and not isinstance(weights, str):
            self.problem((*path, "weights"), f"must be a string or null, got {show(weights)}")
        elif weights not in (None, *WEIGHT_KEYWORDS) and not Path(weights).is_file():
            self.problem((*path, "weights"), f"must be one of {', '.join(WEIGHT_KEYWORDS)} or "
                                             f"a weights file; no file {weights!r}")
        self.probe_layers(path, factory, options)

    def probe_layers(self, path: Path_, factory: Callable[..., Any],
                     options: Mapping[str, Any]) -> None:
        """Build the extractor with random weights (cheap) to learn its layer names."""
        if "weights" not in (accepted_options(factory) or {"weights"}):
            return
        try:
            probe = _probe(factory, {**options, "weights": "random"})
        except (NstkitError, ValueError, TypeError) as exc:
            self.problem(path, str(exc))
            return
        self.resolve_layer = probe.resolve

    def images(self, data: Mapping[str, Any]) -> None:
        self.integer(("size",), data.get("size"), minimum=16, nullable=True)
        self.number(("style_scale",), data.get("style_scale"), positive=True)
        self.integer(("seed",), data.get("seed"), minimum=0, nullable=True)
        self.number(("noise_scale",), data.get("noise_scale"), minimum=0, maximum=0.5)
        self.choice(("preserve_colour",), data.get("preserve_colour"), PRESERVE_CHOICES, True)
        init = data.get("init")
        if self.string(("init",), init) and init not in INIT_CHOICES and not Path(init).is_file():
            self.problem(("init",), f"must be one of {', '.join(INIT_CHOICES)} or an image "
                                    f"file; no file {init!r}")

    def losses(self, specs: Any) -> None:
        if not isinstance(specs, list) or not specs:
            self.problem(("losses",), f"must be a non-empty list of loss terms, got {show(specs)}")
            return
        labels: set[str] = set()
        for index, spec in enumerate(specs):
            self.loss((("losses", index)), spec, labels)
        weights = [s.get("weight", 1.0) for s in specs if isinstance(s, Mapping)]
        if weights and all(isinstance(w, (int, float)) and w == 0 for w in weights):
            self.problem(("losses",), "every term has weight 0; nothing to optimise")

    def loss(self, path: Path_, spec: Any, labels: set[str]) -> None:
        before = len(self.problems)
        if not self.mapping(path, spec):
            return
        if "name" not in spec:
            self.problem((*path, "name"), "is required")
            return
        if "weight" in spec:
            self.number((*path, "weight"), spec["weight"], minimum=0)
        label = spec.get("label", spec["name"])
        if "label" in spec and self.string((*path, "label"), label):
            if label in labels:
                self.problem((*path, "label"), f"{label!r} is used by another term")
            labels.add(label)
        if not self.component((*path, "name"), self.host.losses, spec["name"]):
            return
        factory = self.host.losses.get(spec["name"])
        options = {k: v for k, v in spec.items() if k not in ("name", "weight", "layers", "label")}
        self.options(path, options, factory, f"loss {spec['name']!r}", reserved=("layers",))
        layers = self.layer_spec((*path, "layers"), spec.get("layers"))
        if len(self.problems) == before:
            self.build_loss(path, factory, layers, options)

    def layer_spec(self, path: Path_, spec: Any) -> Any:
        """Check a ``layers`` value; return it as the loss factory takes it (or ``None``)."""
        if spec is None:
            return None
        if isinstance(spec, Mapping) and "schedule" in spec:
            self.mapping(path, spec, ("schedule", "layers", "ratio", "rising"))
            self.choice((*path, "schedule"), spec["schedule"], SCHEDULES)
            if "ratio" in spec:
                self.number((*path, "ratio"), spec["ratio"], positive=True, maximum=MAX_RATIO)
            if not isinstance(spec.get("rising", False), bool):
                self.problem((*path, "rising"), f"must be true or false, "
                                                f"got {show(spec['rising'])}")
            self.layer_names((*path, "layers"), spec.get("layers"))
        elif isinstance(spec, Mapping):
            for layer, weight in spec.items():
                self.number((*path, str(layer)), weight, minimum=0)
            self.layer_names(path, list(spec))
        else:
            self.layer_names(path, spec)
        try:
            return resolve_layer_spec(spec)
        except (ValueError, TypeError, KeyError, ArithmeticError):
            return None

    def layer_names(self, path: Path_, names: Any) -> None:
        if not isinstance(names, list) or not names:
            self.problem(path, f"must be a non-empty list of layer names, a mapping of layer "
                               f"name to weight, or a schedule; got {show(names)}")
            return
        for index, name in enumerate(names):
            if not isinstance(name, str):
                self.problem((*path, index), f"must be a layer name, got {show(name)}")
            elif self.resolve_layer is not None:
                try:
                    self.resolve_layer(name)
                except NstkitError as exc:
                    self.problem((*path, index), str(exc).replace("for VGGExtractor",
                                                                  f"for {self.extractor_name}"))

    def build_loss(self, path: Path_, factory: Callable[..., Any], layers: Any,
                   options: Mapping[str, Any]) -> None:
        try:
            factory(layers=layers, **options)
        except (NstkitError, ValueError, TypeError) as exc:
            self.problem(path, f"invalid term: {exc}")

    def optimizer(self, spec: Any) -> None:
        path: Path_ = ("optimizer",)
        if not self.mapping(path, spec):
            return
        self.integer((*path, "iterations"), spec.get("iterations"), minimum=0)
        if "name" not in spec:
            self.problem((*path, "name"), "is required")
        elif self.component((*path, "name"), self.host.optimizers, spec["name"]):
            options = {k: v for k, v in spec.items() if k not in ("name", "iterations")}
            factory = self.host.optimizers.get(spec["name"])
            before = len(self.problems)
            self.options(path, options, factory, f"optimizer {spec['name']!r}", skip=1)
            if len(self.problems) == before:
                self.build_optimizer(path, factory, options)

    def build_optimizer(self, path: Path_, factory: Callable[..., Any],
                        options: Mapping[str, Any]) -> None:
        """Build the optimiser on a dummy parameter to check its option values."""
        try:
            factory([torch.zeros(1, requires_grad=True)], **options)
        except (NstkitError, ValueError, TypeError, ArithmeticError) as exc:
            self.problem(path, f"invalid options: {exc}")

    def multiscale(self, spec: Any) -> None:
        path: Path_ = ("multiscale",)
        if spec is None or not self.mapping(path, spec, ("scales", "iterations", "detail")):
            return
        if not isinstance(spec.get("detail", True), bool):
            self.problem((*path, "detail"), f"must be true or false, got {show(spec['detail'])}")
        scales, shares = spec.get("scales"), spec.get("iterations")
        for key, values in (("scales", scales), ("iterations", shares)):
            if not isinstance(values, list) or not values:
                self.problem((*path, key), f"must be a non-empty list of numbers, "
                                           f"got {show(values)}")
                return
            for index, value in enumerate(values):
                self.number((*path, key, index), value, positive=True)
        if len(scales) != len(shares):
            self.problem((*path, "iterations"), f"needs one share per scale ({len(scales)}), "
                                                f"got {len(shares)}")
        numeric = all(isinstance(s, (int, float)) for s in scales)
        if numeric and (scales != sorted(set(scales)) or scales[-1] != 1):
            self.problem((*path, "scales"), f"must rise strictly and end at 1.0, got {scales}")

    def output(self, spec: Any) -> None:
        path: Path_ = ("output",)
        if not self.mapping(path, spec, ("format", "quality", "save_every")):
            return
        self.choice((*path, "format"), spec.get("format"), FORMATS)
        self.integer((*path, "quality"), spec.get("quality"), minimum=1, maximum=100)
        self.integer((*path, "save_every"), spec.get("save_every"), minimum=0)


PROBE_CACHE_SIZE = 4
_probes: dict[Hashable, Any] = {}


def _probe(factory: Callable[..., Any], options: Mapping[str, Any]) -> Any:
    """The extractor built with ``options``; the last few are kept (each may be a VGG)."""
    key = (factory_key(factory), tuple(sorted((k, str(v)) for k, v in options.items())))
    if key not in _probes:
        _probes[key] = factory(**options)
        while len(_probes) > PROBE_CACHE_SIZE:
            del _probes[next(iter(_probes))]
    return _probes[key]
