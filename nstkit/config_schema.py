"""The configuration model of one plugin host: every registered component with its options.

:func:`config_model` narrows :class:`nstkit.config.RecipeConfig` so that ``losses[i]``,
``optimizer`` and ``extractor`` each validate against the registered component they name (its
``options`` model, or one read from its factory's signature). :func:`validate_config` checks a
resolved recipe with it, plus layer names against the extractor's table, and returns every
problem at once; :func:`recipe_json_schema` is the same model as JSON Schema, for editors.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Hashable, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, create_model

from nstkit.config import (
    ExtractorConfig,
    LossTermConfig,
    OptimizerConfig,
    Options,
    RecipeConfig,
)
from nstkit.config_errors import KeyPath, describe_errors, format_path
from nstkit.config_options import options_model
from nstkit.errors import NstkitError
from nstkit.layers import LayerTable, layer_names_in, resolve_layer_spec
from nstkit.registry import Entry, Registry, factory_key

if typing.TYPE_CHECKING:
    from nstkit.plugins import PluginHost

COMPONENTS: dict[str, tuple[str, type[BaseModel], tuple[str, ...]]] = {
    # recipe key: (registry kind, base model, parameters the factory takes that are not options)
    "losses": ("loss", LossTermConfig, ("layers",)),
    "optimizer": ("optimizer", OptimizerConfig, ()),
    "extractor": ("extractor", ExtractorConfig, ()),
}


def _component_model(key: str, entry: Entry) -> type[BaseModel]:
    kind, base, reserved = COMPONENTS[key]
    try:
        options = options_model(entry, 1 if kind == "optimizer" else 0, reserved)
    except NstkitError:  # its factory cannot be imported: reported when it is used
        options = type("AnyOptions", (Options,), {"model_config": ConfigDict(extra="allow")})
    extra = options.model_config.get("extra") or "forbid"
    namespace = {"__annotations__": {"name": Literal[entry.name]},
                 "model_config": ConfigDict(extra=extra, title=f"{kind} {entry.name}"),
                 "__doc__": (options.__doc__ or entry.description or "").strip() or None,
                 "__module__": __name__}
    return type(f"{kind}_{entry.name}", (options, base), namespace)


def _tag(value: Any) -> str | None:
    name = value.get("name") if isinstance(value, dict) else getattr(value, "name", None)
    return name if isinstance(name, str) else None


def _union(key: str, registry: Registry) -> Any:
    """``losses[i]``, ``optimizer`` or ``extractor``: one model per registered name."""
    members = [Annotated[_component_model(key, entry), Tag(entry.name)] for entry in registry]
    if not members:
        return COMPONENTS[key][1]
    discriminator = Discriminator(_tag, custom_error_type="unknown_component",
                                  custom_error_message=f"unknown {registry.kind}")
    return Annotated[typing.Union[tuple(members)], discriminator]  # noqa: UP007


_models: dict[tuple[int, ...], tuple[tuple[Registry, ...], type[RecipeConfig]]] = {}


def config_model(host: PluginHost) -> type[RecipeConfig]:
    """:class:`RecipeConfig` with every component the host has registered (built once per
    set of registries)."""
    registries = (host.losses, host.optimizers, host.extractors)
    key = tuple(id(registry) for registry in registries)
    if key not in _models:
        loss, optimizer, extractor = (_union(k, r) for k, r in zip(COMPONENTS, registries,
                                                                     strict=True))
        model = create_model(
            "Recipe", __base__=RecipeConfig,
            losses=(Annotated[list[loss], Field(min_length=1)], RecipeConfig.model_fields[
                "losses"]),
            optimizer=(optimizer, RecipeConfig.model_fields["optimizer"]),
            extractor=(extractor, RecipeConfig.model_fields["extractor"]))
        _models[key] = (registries, model)
        while len(_models) > 8:
            del _models[next(iter(_models))]
    return _models[key][1]


def validate_config(data: Mapping[str, Any], host: PluginHost,
                    source: Callable[[KeyPath], str] = lambda path: "recipe", *,
                    build: bool = True, check_layers: bool = True,
                    ) -> tuple[RecipeConfig | None, list[str]]:
    """Check a resolved recipe; ``(config, [])`` when valid, else ``(None, problems)``.

    Each problem reads ``"<source>: <key path>: <what is wrong>"``; ``source`` names the file
    (or ``--set``) that gave a key path. With ``build``, plugin components that declare no
    options model are built once to check their values (see :func:`build_problems`); with
    ``check_layers``, layer names are checked against the extractor's layer table.
    """
    config, problems = None, []
    try:
        config = config_model(host).model_validate(data)
    except ValidationError as exc:
        problems += [(path, message) for path, message in describe_errors(exc, data, host)]
    if check_layers:
        problems += layer_problems(data, host, probe=build)
    if config is not None and build:
        problems += build_problems(config, host)
    lines = [f"{source(path)}: {format_path(path)}: {message}" for path, message in problems]
    return (config if not lines else None), list(dict.fromkeys(lines))


def layer_table(host: PluginHost, extractor: Any, probe: bool = True) -> LayerTable | None:
    """The layer table of the recipe's extractor: declared, or (with ``probe``) learnt by
    building it with random weights (cheap) when the extractor's factory accepts them."""
    name = extractor.get("name") if isinstance(extractor, Mapping) else None
    if not isinstance(name, str) or name not in host.extractors:
        return None
    try:
        entry = host.extractors.entry(extractor["name"])
    except NstkitError:
        return None
    if entry.layers is not None or not probe:
        return entry.layers
    return _probe(entry, {k: v for k, v in extractor.items() if k != "name"})


PROBE_CACHE_SIZE = 4
_probes: dict[Hashable, LayerTable | None] = {}


def _probe(entry: Entry, options: dict[str, Any]) -> LayerTable | None:
    """The layer table of an extractor built with random weights; the last few are kept."""
    key = (factory_key(entry.factory), tuple(sorted((k, str(v)) for k, v in options.items())))
    if key not in _probes:
        _probes[key] = _build_table(entry, options)
        while len(_probes) > PROBE_CACHE_SIZE:
            del _probes[next(iter(_probes))]
    return _probes[key]


def _build_table(entry: Entry, options: dict[str, Any]) -> LayerTable | None:
    try:
        params = inspect.signature(entry.factory).parameters.values()
        if not any(p.name == "weights" or p.kind is p.VAR_KEYWORD for p in params):
            return None
        built = entry.factory(**{**options, "weights": "random"})
        return LayerTable(tuple(built.layer_names), dict(built.aliases), entry.name)
    except Exception:  # the options themselves are reported by the model
        return None


def layer_problems(data: Mapping[str, Any], host: PluginHost,
                   probe: bool = True) -> list[tuple[KeyPath, str]]:
    """Every layer name in ``losses[i].layers`` that the recipe's extractor does not have
    (see :func:`layer_table` for ``probe``)."""
    table = layer_table(host, data.get("extractor"), probe)
    losses = data.get("losses")
    if table is None or not isinstance(losses, list):
        return []
    problems = []
    for index, term in enumerate(losses):
        spec = term.get("layers") if isinstance(term, Mapping) else None
        for place, name in _layer_places(spec):
            try:
                table.resolve(name)
            except NstkitError as exc:
                problems.append((("losses", index, "layers", *place), str(exc)))
    return problems


def _layer_places(spec: Any) -> list[tuple[tuple[str | int, ...], str]]:
    if isinstance(spec, list):
        return [((i,), name) for i, name in enumerate(spec) if isinstance(name, str)]
    if isinstance(spec, Mapping) and "schedule" in spec:
        return [(("layers", *place), name) for place, name in _layer_places(spec.get("layers"))]
    return [((name,), name) for name in layer_names_in(spec)]


def build_problems(config: RecipeConfig, host: PluginHost) -> list[tuple[KeyPath, str]]:
    """Build each loss term and the optimiser whose plugin declared no options model, so
    that values only their code can judge are checked before any job runs."""
    problems: list[tuple[KeyPath, str]] = []
    for index, term in enumerate(config.losses):
        entry = host.losses.entry(term.name)
        if entry.options is None and term.weight:
            try:
                entry.factory(layers=resolve_layer_spec(_raw_layers(term)), **term.options)
            except (NstkitError, ValueError, TypeError) as exc:
                problems.append((("losses", index), f"invalid term: {exc}"))
    entry = host.optimizers.entry(config.optimizer.name)
    if entry.options is None:
        import torch

        try:
            entry.factory([torch.zeros(1, requires_grad=True)], **config.optimizer.options)
        except (NstkitError, ValueError, TypeError, ArithmeticError) as exc:
            problems.append((("optimizer",), f"invalid options: {exc}"))
    return problems


def _raw_layers(term: LossTermConfig) -> Any:
    layers = term.layers
    return layers.model_dump() if isinstance(layers, BaseModel) else layers


def recipe_json_schema(host: PluginHost) -> dict[str, Any]:
    """JSON Schema of a recipe file (``extends`` and ``set`` included) for every component
    the host has registered. A file that ``extends`` another may leave out any key, and its
    ``optimizer`` or ``extractor`` mapping may leave out ``name`` (mappings merge)."""
    schema = config_model(host).model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "nstkit recipe"
    schema["properties"]["extends"] = {
        "type": "string", "description": "A built-in recipe name or a path to derive from."}
    schema["properties"]["set"] = {
        "type": "object", "description": "key.path: value changes applied after merging."}
    for definition in schema.get("$defs", {}).values():
        if str(definition.get("title", "")).startswith(("optimizer ", "extractor ")):
            definition["required"] = [k for k in definition.get("required", []) if k != "name"]
    _any_of(schema)
    return schema


def _any_of(node: Any) -> None:
    """``oneOf`` -> ``anyOf``: a partial mapping may fit several components."""
    if isinstance(node, dict):
        if "oneOf" in node:
            node["anyOf"] = node.pop("oneOf")
            node.pop("discriminator", None)
        for value in node.values():
            _any_of(value)
    elif isinstance(node, list):
        for value in node:
            _any_of(value)
