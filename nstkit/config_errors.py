"""pydantic's validation errors as nstkit's one-line problems: ``key.path: what is wrong``.

Messages say what a value must be and what it was, in the recipe's own words (``null``,
``true``), and name close matches for misspelt keys and components.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from nstkit.config import (
    LayerSchedule,
    MultiscaleConfig,
    OutputConfig,
    RecipeConfig,
    recipe_defaults,
)
from nstkit.config_options import options_model
from nstkit.layers import suggest

if typing.TYPE_CHECKING:
    from nstkit.plugins import PluginHost

KeyPath = tuple[str | int, ...]
SECTIONS = ("extractor", "optimizer", "output", "multiscale")
KINDS = {"losses": "loss", "optimizer": "optimizer", "extractor": "extractor"}
COMMON = {"losses": ("name", "weight", "layers", "label"), "optimizer": ("name", "iterations"),
          "extractor": ("name",)}

SIMPLE = {
    "missing": "is required",
    "int_type": "must be an integer", "int_from_float": "must be an integer",
    "int_parsing": "must be an integer", "float_type": "must be a number",
    "float_parsing": "must be a number", "finite_number": "must be a finite number",
    "bool_type": "must be true or false", "bool_parsing": "must be true or false",
    "string_type": "must be a string", "string_too_short": "must be a non-empty string",
    "list_type": "must be a list", "tuple_type": "must be a list",
    "dict_type": "must be a mapping", "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping", "too_short": "must not be empty",
    "too_long": "has too many items", "none_required": "must be null",
    "string_pattern_mismatch": "must be letters, digits, '.', '_' or '-'",
}
TYPES = ("int_type", "int_from_float", "int_parsing", "float_type", "float_parsing",
         "string_type", "bool_type", "bool_parsing", "list_type", "dict_type", "model_type")
BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
          "less_than_equal": "<="}


def format_path(path: KeyPath) -> str:
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
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe_errors(error: ValidationError, data: Mapping[str, Any],
                    host: PluginHost) -> list[tuple[KeyPath, str]]:
    """``(key path, message)`` for each of pydantic's errors about ``data``."""
    return [_describe(item, data, host) for item in error.errors(include_url=False)]


def display_path(loc: tuple[Any, ...], data: Any, kind: str = "") -> KeyPath:
    """pydantic's location without the union tags it inserts (``losses.0.gram.shift`` ->
    ``("losses", 0, "shift")``), found by walking ``data`` along it; ``kind`` is the error
    type (only a missing or unknown key may end at a key that is not in ``data``)."""
    path: list[str | int] = []
    node = data
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        child = _child(node, part)
        if child is _MISSING and last and kind in ("missing", "extra_forbidden", ""):
            path.append(part)  # a key the data lacks, or has but should not
        elif child is not _MISSING and (last or isinstance(child, (Mapping, list))):
            path.append(part)
            node = child
        # else: a union member's tag (``schedule`` is both a tag and a key of its data)
    return tuple(path)


_MISSING = object()


def _child(node: Any, part: Any) -> Any:
    if isinstance(node, Mapping):
        return node.get(part, _MISSING)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return _MISSING


def _describe(item: Mapping[str, Any], data: Mapping[str, Any],
              host: PluginHost) -> tuple[KeyPath, str]:
    kind, value = item["type"], item.get("input")
    path = display_path(item["loc"], data, kind)
    if kind == "unknown_component" and not isinstance(value, Mapping):
        return path, f"must be a mapping, got {show(value)}"
    if kind == "unknown_component":
        return (*path, "name"), _unknown_component(path, value, host)
    if kind == "extra_forbidden":
        return path, _unknown_key(path, data, host)
    if kind == "literal_error":
        expected = item["ctx"]["expected"]
        if _nullable(path, data, host):  # 'a' or 'b' -> 'a', 'b' or null
            expected = ", ".join(expected.rsplit(" or ", 1)) + " or null"
        return path, f"must be {expected}; got {show(value)}"
    if kind in BOUNDS:
        bound = next(iter(item["ctx"].values()))
        return path, f"must be {BOUNDS[kind]} {show(bound)}, got {show(value)}"
    if kind == "value_error":
        return path, str(item["ctx"]["error"])
    if kind == "missing":
        return path, SIMPLE[kind]
    if kind == "too_short" and path == ("losses",):
        return path, f"must be a non-empty list of loss terms, got {show(value)}"
    if kind in SIMPLE:
        nullable = " or null" if kind in TYPES and _nullable(path, data, host) else ""
        return path, f"{SIMPLE[kind]}{nullable}, got {show(value)}"
    message = item["msg"]
    return path, f"{message[0].lower()}{message[1:]}, got {show(value)}"


def _unknown_component(path: KeyPath, value: Any, host: PluginHost) -> str:
    registry = host.registry(KINDS[str(path[0])])
    name = value.get("name")
    if name is None:
        return "is required"
    if not isinstance(name, str) or not name:
        return f"must be a registered {registry.kind} name, got {show(name)}"
    try:
        registry.entry(name)
    except Exception as exc:  # unknown or blocked: the registry says which, and the choices
        return str(exc)
    return f"unknown {registry.kind} {name!r}"


def _unknown_key(path: KeyPath, data: Mapping[str, Any], host: PluginHost) -> str:
    key, parent = str(path[-1]), path[:-1]
    section = str(parent[0]) if parent else ""
    if parent and section in KINDS and len(parent) == (2 if section == "losses" else 1):
        return _unknown_option(key, parent, data, host)
    allowed = _allowed(parent, host)
    hint = suggest(key, allowed)
    nested = _nested_keys(host)
    if not parent and (key in nested or suggest(key, list(nested))):
        close = key if key in nested else suggest(key, list(nested)).split("'")[1]
        hint = f" Did you mean {nested[close]!r}?"
    return f"unknown key.{hint} Allowed: {', '.join(allowed)}."


def _unknown_option(key: str, parent: KeyPath, data: Mapping[str, Any],
                    host: PluginHost) -> str:
    section = str(parent[0])
    node: Any = data
    for part in parent:
        node = node[part]
    registry = host.registry(KINDS[section])
    entry = registry.entry(node["name"])
    model = options_model(entry, 1 if section == "optimizer" else 0, ("layers",))
    accepted = sorted(set(model.model_fields) - {"layers"})
    listed = ", ".join(accepted) or "(none)"
    what = f"{registry.kind} {entry.name!r}"
    return f"unknown option for {what}.{suggest(key, accepted)} Accepted: {listed}."


def _nullable(path: KeyPath, data: Mapping[str, Any], host: PluginHost) -> bool:
    """Whether the key at ``path`` also accepts ``null`` (top-level keys and the keys of a
    component's options)."""
    field = None
    if len(path) == 1:
        field = RecipeConfig.model_fields.get(str(path[0]))
    elif str(path[0]) in KINDS and len(path) == (3 if path[0] == "losses" else 2):
        node: Any = data
        for part in path[:-1]:
            node = node[part]
        try:
            entry = host.registry(KINDS[str(path[0])]).entry(node["name"])
        except Exception:  # an unknown component is reported on its own
            return False
        model = options_model(entry, 1 if path[0] == "optimizer" else 0, ("layers",))
        field = model.model_fields.get(str(path[-1]))
    return field is not None and type(None) in typing.get_args(field.annotation)


def _allowed(parent: KeyPath, host: PluginHost) -> list[str]:
    model: type[BaseModel] = RecipeConfig
    if not parent:
        return list(recipe_defaults())
    if parent[0] == "losses":
        return list(LayerSchedule.model_fields)
    for part in parent:
        found = _model_in(model.model_fields[str(part)].annotation)
        if found is None:
            return []
        model = found
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model a field's annotation holds, however deep in unions and ``Annotated``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _nested_keys(host: PluginHost) -> dict[str, str]:
    """A nested key's name -> its full path (``iterations`` -> ``optimizer.iterations``), for
    keys written at the top level by mistake."""
    found: dict[str, str] = {"iterations": "optimizer.iterations"}
    for section, model in (("output", OutputConfig), ("multiscale", MultiscaleConfig)):
        found.update({key: f"{section}.{key}" for key in model.model_fields
                      if key not in found})
    for entry in host.extractors:
        if entry.options is not None:
            found.update({key: f"extractor.{key}" for key in options_model(entry, 0, ())
                          .model_fields if key not in found})
    return found
