"""Finding recipes, following ``extends``, applying ``set``/``--set`` and validating the result."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from nstkit.config import recipe_defaults
from nstkit.config_errors import KeyPath, format_path, show
from nstkit.errors import RecipeError
from nstkit.plugins import PluginHost, get_host
from nstkit.recipe.model import Recipe
from nstkit.recipe.yamlio import parse

BUILTIN_PACKAGE = "nstkit.recipes"
SET_SOURCE = "--set"
MAX_NODES = 10_000
FILE_ONLY_KEYS = ("extends", "set")


def builtin_recipes() -> dict[str, Traversable]:
    """Built-in recipe name -> its YAML resource (works in editable and wheel installs)."""
    folder = resources.files(BUILTIN_PACKAGE)
    return {item.name[:-5]: item for item in folder.iterdir() if item.name.endswith(".yaml")}


def is_path(ref: str | Path) -> bool:
    """A recipe reference is a file path (not a built-in name) when it looks like one."""
    text = str(ref)
    return isinstance(ref, Path) or text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text


@dataclass
class _RecipeFile:
    """One recipe file in an ``extends`` chain."""

    label: str
    name: str
    data: dict[str, Any]


@dataclass
class _Provenance:
    """Which file (or ``--set``) gave each key path of the merged recipe."""

    default: str
    sources: dict[KeyPath, str] = field(default_factory=dict)

    def record(self, value: Any, label: str, path: KeyPath = ()) -> None:
        """``label`` gave ``path`` and everything under it (earlier sources there forgotten)."""
        for key in [k for k in self.sources if k[: len(path)] == path and len(k) > len(path)]:
            del self.sources[key]
        self._mark(value, label, path)

    def _mark(self, value: Any, label: str, path: KeyPath) -> None:
        self.sources[path] = label
        children = value.items() if isinstance(value, Mapping) else (
            enumerate(value) if isinstance(value, list) else ())
        for key, child in children:
            self._mark(child, label, (*path, key))

    def merge_record(self, value: Mapping[str, Any], base: Any, label: str,
                     path: KeyPath = ()) -> None:
        for key, child in value.items():
            here = (*path, key)
            if isinstance(child, Mapping) and isinstance(base, Mapping) and \
                    isinstance(base.get(key), Mapping):
                self.sources[here] = label
                self.merge_record(child, base[key], label, here)
            else:
                self.record(child, label, here)

    def __call__(self, path: KeyPath) -> str:
        for end in range(len(path), 0, -1):
            if path[:end] in self.sources:
                return self.sources[path[:end]]
        return self.default


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``: mappings merge key by key; lists and scalars replace."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _read(ref: str | Path, relative_to: Path | None) -> tuple[str, str, str, Path | None]:
    """``(label, name, text, folder)`` of a recipe reference; raises RecipeError.

    ``folder`` is ``None`` for built-ins (their ``extends`` name other built-ins)."""
    if not is_path(ref):
        found = builtin_recipes()
        if str(ref) not in found:
            names = ", ".join(sorted(found))
            raise RecipeError([f"{ref}: no built-in recipe of that name and no such file "
                               f"(built-in recipes: {names})"])
        return f"{ref}.yaml (built-in)", str(ref), found[str(ref)].read_text("utf-8"), None
    path = Path(ref)
    if relative_to is not None and not path.is_absolute():
        path = relative_to / path
    try:
        return str(path), path.stem, path.read_text("utf-8"), path.parent
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise RecipeError([f"{path}: cannot read the recipe: {reason}"]) from None


def _parse(label: str, text: str) -> dict[str, Any]:
    try:
        data = parse(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError([f"{label}: invalid YAML{where}: {problem}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RecipeError([f"{label}: a recipe must be a mapping of keys, got {show(data)}"])
    if _too_big(data):
        raise RecipeError([f"{label}: more than {MAX_NODES} values (YAML aliases expanded); "
                           f"not a recipe"])
    return data


def _too_big(data: Any) -> bool:
    """Whether ``data`` has more than ``MAX_NODES`` values, counting shared ones each time."""
    stack, count = [data], 0
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_NODES:
            return True
        if isinstance(node, Mapping):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def read_chain(ref: str | Path, relative_to: Path | None = None,
               seen: tuple[tuple[str, str], ...] = ()) -> list[_RecipeFile]:
    """The recipe and every recipe it ``extends``, root first."""
    label, name, text, folder = _read(ref, relative_to)
    key = str(Path(label).resolve()) if folder is not None else label
    keys = [k for k, _ in seen]
    if key in keys:
        cycle = " -> ".join([*(lbl for _, lbl in seen[keys.index(key):]), label])
        raise RecipeError([f"{label}: extends: cycle {cycle}"])
    data = _parse(label, text)
    parent = data.get("extends")
    if parent is None:
        return [_RecipeFile(label, name, data)]
    if not isinstance(parent, str) or not parent:
        raise RecipeError([f"{label}: extends: must be a recipe name or path, got {show(parent)}"])
    return [*read_chain(parent, folder, (*seen, (key, label))), _RecipeFile(label, name, data)]


def parse_set(item: str) -> tuple[list[str | int], Any]:
    """``"losses.0.weight=1e-2"`` -> ``(["losses", 0, "weight"], 0.01)`` (value read as YAML)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise RecipeError([f"{SET_SOURCE} {item}: expected key.path=value"])
    try:
        value = parse(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return split_path(key), value


def split_path(key: str) -> list[str | int]:
    """``"losses.0.weight"`` -> ``["losses", 0, "weight"]``."""
    return [int(p) if p.isascii() and p.isdecimal() else p for p in key.strip().split(".")]


def apply_set(data: dict[str, Any], parts: Sequence[str | int], value: Any,
              label: str) -> tuple[str | int, ...]:
    """Set ``data[parts...] = value``, creating missing mappings; list index ``len`` appends.

    Returns the shortest prefix of ``parts`` that did not exist before (what ``label`` gave).
    """
    node: Any = data
    created: tuple[str | int, ...] | None = None
    for depth, part in enumerate(parts):
        last, here = depth == len(parts) - 1, tuple(parts[: depth + 1])
        if isinstance(node, list):
            if not isinstance(part, int) or part > len(node):
                raise RecipeError([f"{label}: {format_path(here)}: no item {part!r} in a list "
                                   f"of {len(node)} (use 0..{len(node)})"])
            if part == len(node):
                node.append({} if not last else None)
                created = created or here
        elif isinstance(node, dict):
            part = str(part)
            if part not in node or node[part] is None:
                created = created or here
                if not last:
                    node[part] = {}
        else:
            raise RecipeError([f"{label}: {format_path(here[:-1])}: cannot set a key inside "
                               f"{show(node)}"])
        if last:
            node[part] = copy.deepcopy(value)
        else:
            node = node[part]
    return created or tuple(parts)


def _merge_files(chain: list[_RecipeFile], sets: Sequence[str],
                  provenance: _Provenance) -> dict[str, Any]:
    merged = recipe_defaults()
    for index, item in enumerate(chain):
        own = {k: v for k, v in item.data.items() if k not in FILE_ONLY_KEYS}
        if index < len(chain) - 1:  # name and description belong to the file that states them
            own = {k: v for k, v in own.items() if k not in ("name", "description")}
        provenance.merge_record(own, merged, item.label)
        merged = deep_merge(merged, own)
        file_sets = item.data.get("set") or {}
        if not isinstance(file_sets, Mapping):
            raise RecipeError([f"{item.label}: set: must be a mapping of key.path: value"])
        for key, value in file_sets.items():
            if not isinstance(key, str) or not key.strip():
                raise RecipeError([f"{item.label}: set: keys must be key.path strings, "
                                   f"got {show(key)}"])
            _set(merged, split_path(key), value, item.label, provenance)
    for assignment in sets:
        parts, value = parse_set(assignment)
        _set(merged, parts, value, SET_SOURCE, provenance)
    return merged


def _set(data: dict[str, Any], parts: list[str | int], value: Any, label: str,
         provenance: _Provenance) -> None:
    created = apply_set(data, parts, value, label)
    node: Any = data
    for part in created:
        node = node[part if isinstance(node, list) else str(part)]
    provenance.record(node, label, tuple(str(p) if not isinstance(p, int) else p
                                         for p in created))


def load_recipe(ref: str | Path, sets: Sequence[str] = (), *,
                host: PluginHost | None = None) -> Recipe:
    """Read, resolve and validate a recipe.

    Args:
        ref: a built-in recipe name (``"gatys"``) or a YAML file path.
        sets: ``key.path=value`` overrides applied last (``losses.1.weight=1e-2``).
        host: the plugin host whose components are valid (default: the process-wide one).

    Raises:
        RecipeError: with every problem found, one ``"<file>: <key path>: <problem>"`` each.
    """
    chain = read_chain(ref)
    provenance = _Provenance(chain[-1].label)
    data = _merge_files(chain, sets, provenance)
    if data.get("name") is None:
        data["name"] = re.sub(r"[^A-Za-z0-9._-]", "-", chain[-1].name).lstrip("._-") or "recipe"
    from nstkit.config_schema import validate_config

    config, problems = validate_config(data, host or get_host(), provenance)
    if config is None:
        raise RecipeError(problems)
    return Recipe(data=data, config=config, source=chain[-1].label,
                  chain=[item.label for item in chain])
