"""The plugin host: built-ins, entry points of group ``nstkit``, and the component registries.

Plugins load lazily through :func:`get_host`, never as a side effect of ``import nstkit``.

Environment variables:
    NSTKIT_DISABLE_PLUGIN_AUTOLOAD=1   load no entry-point plugins (built-ins only).
    NSTKIT_PLUGINS=a,b                 load only these entry-point plugins (allow-list).
    NSTKIT_BLOCK_PLUGINS=a,b           never load these entry-point plugins.
    NSTKIT_TRACE_HOOKS=1               print every hook call, per plugin, to stderr.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import import_module, metadata
from typing import Any

import pluggy

from nstkit import hookspecs
from nstkit.errors import ComponentClashError, NstkitError, PluginError
from nstkit.registry import Registry

ENTRY_POINT_GROUP = "nstkit"
DEFAULT_PLUGINS = (
    "nstkit.default_plugins.extractors",
    "nstkit.default_plugins.losses",
    "nstkit.default_plugins.optimizers",
    "nstkit.default_plugins.executors",
)
_KINDS = {"extractor": "register_extractors", "loss": "register_losses",
          "optimizer": "register_optimizers", "executor": "register_executors"}


@dataclass
class PluginInfo:
    """What ``nstkit plugins`` shows for one plugin."""

    name: str
    distribution: str | None = None
    version: str | None = None
    components: dict[str, list[str]] = field(default_factory=dict)
    hooks: list[str] = field(default_factory=list)
    error: str | None = None


def _env_list(name: str) -> set[str] | None:
    value = os.environ.get(name, "").strip()
    return {item.strip() for item in value.split(",") if item.strip()} if value else None


class PluginHost:
    """A pluggy ``PluginManager`` plus the component registries it fills (extractors, losses,
    optimisers, executors).

    Args:
        plugins: extra plugin objects or module names registered explicitly (the only way,
            besides installed entry points, that code becomes a plugin).
        autoload: load entry-point plugins; ``None`` reads ``NSTKIT_DISABLE_PLUGIN_AUTOLOAD``.
    """

    def __init__(self, plugins: Iterable[object | str] = (), *, autoload: bool | None = None):
        self.pm = pluggy.PluginManager("nstkit")
        self.pm.add_hookspecs(hookspecs)
        self.load_failures: dict[str, str] = {}
        self.distributions: dict[str, tuple[str, str]] = {}
        self._registries: dict[str, Registry] = {}
        for module_name in DEFAULT_PLUGINS:
            self.pm.register(import_module(module_name), name=module_name)
        if autoload is None:
            autoload = not os.environ.get("NSTKIT_DISABLE_PLUGIN_AUTOLOAD")
        if autoload:
            self._load_entry_points()
        for plugin in plugins:
            self.add(plugin)
        self.pm.check_pending()

    def _load_entry_points(self) -> None:
        allowed, blocked = _env_list("NSTKIT_PLUGINS"), _env_list("NSTKIT_BLOCK_PLUGINS") or set()
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in blocked or (allowed is not None and ep.name not in allowed):
                continue
            if ep.dist is not None:
                self.distributions[ep.name] = (ep.dist.name, ep.dist.version)
            try:
                self.pm.register(ep.load(), name=ep.name)
                self._check_hooks(ep.name)
            except Exception as exc:  # a broken plugin must not take nstkit down
                self._failed(ep.name, f"{type(exc).__name__}: {exc}", "failed to load")

    def _check_hooks(self, name: str) -> None:
        """Unregister plugin ``name`` again if it implements a hook that does not exist."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError:
            self.pm.unregister(name=name)
            raise

    def _failed(self, name: str, message: str, what: str = "failed") -> None:
        """Record (and warn about) a plugin that failed; the other plugins keep working."""
        known = self.load_failures.get(name)
        self.load_failures[name] = f"{known}; {message}" if known else message
        warnings.warn(f"nstkit plugin {name!r} {what}: {message}", RuntimeWarning, stacklevel=3)

    def add(self, plugin: object | str, name: str | None = None) -> None:
        """Register a plugin object (or import a module by name) explicitly."""
        if isinstance(plugin, str):
            name = name or plugin
            try:
                plugin = import_module(plugin)
            except Exception as exc:
                raise PluginError(name, f"failed to import: {exc}") from exc
        self.pm.register(plugin, name=name)
        self.pm.check_pending()
        self._registries.clear()

    def has(self, name: str) -> bool:
        """Whether a plugin of that name is registered."""
        return self.pm.has_plugin(name)

    def remove(self, name: str) -> None:
        """Unregister the plugin ``name`` (nothing happens if it is not registered); the
        registries are rebuilt on their next use."""
        if self.pm.has_plugin(name):
            self.pm.unregister(name=name)
            self._registries.clear()

    @contextlib.contextmanager
    def added(self, plugin: object, name: str) -> Iterator[object]:
        """Register ``plugin`` as ``name`` for the ``with`` block, then remove it again::

            with host.added(CurveRecorder(folder), name="nstkit.compare.curves"):
                ...
        """
        self.add(plugin, name=name)
        try:
            yield plugin
        finally:
            self.remove(name)

    def registry(self, kind: str) -> Registry:
        """The registry of ``kind`` (``"extractor"``, ``"loss"``, ``"optimizer"``,
        ``"executor"``), built once."""
        if kind not in self._registries:
            registry = Registry(kind)
            registry.load_failures = self.load_failures
            for impl in self._impls(_KINDS[kind]):
                self._register_from(impl, kind, registry)
            self._registries[kind] = registry
        return self._registries[kind]

    def _register_from(self, impl: Any, kind: str, registry: Registry) -> None:
        """Run one plugin's ``register_*`` hook: all of its components, or none if it raises.

        A name two plugins register is blocked (looking it up names both plugins); the
        plugins' other components stay usable.
        """
        calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        try:
            self._call(impl, _KINDS[kind], register=lambda *a, **kw: calls.append((a, kw)))
        except PluginError as exc:
            self._failed(impl.plugin_name, str(exc).removeprefix(f"plugin {impl.plugin_name!r}: "))
            return
        for args, kwargs in calls:
            try:
                registry.register(*args, plugin=impl.plugin_name, **kwargs)
            except ComponentClashError as exc:
                registry.block(args[0] if args else kwargs.get("name"), str(exc))
                self._failed(impl.plugin_name, str(exc))
            except TypeError as exc:
                self._failed(impl.plugin_name, f"{_KINDS[kind]}: {exc}")

    @property
    def extractors(self) -> Registry:
        return self.registry("extractor")

    @property
    def losses(self) -> Registry:
        return self.registry("loss")

    @property
    def optimizers(self) -> Registry:
        return self.registry("optimizer")

    @property
    def executors(self) -> Registry:
        return self.registry("executor")

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call a lifecycle hook on every plugin; a plugin's exception names the plugin."""
        for impl in self._impls(hook_name):
            self._call(impl, hook_name, **kwargs)

    def _impls(self, hook_name: str) -> list[Any]:
        return list(getattr(self.pm.hook, hook_name).get_hookimpls())

    def _call(self, impl: Any, hook_name: str, **kwargs: Any) -> Any:
        if os.environ.get("NSTKIT_TRACE_HOOKS"):
            print(f"nstkit: {hook_name} -> {impl.plugin_name}", file=sys.stderr)
        try:
            return impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
        except NstkitError:
            raise
        except Exception as exc:
            message = f"{hook_name} raised {type(exc).__name__}: {exc}"
            raise PluginError(impl.plugin_name, message) from exc

    def compare_variant(self, ref: str, sets: list[str]) -> tuple[Any, Any] | None:
        """The first plugin's ``(recipe, executor)`` for an ``nstkit compare`` argument
        (the ``compare_variant`` hook), or ``None``; a plugin's exception names the plugin."""
        for impl in reversed(self._impls("compare_variant")):  # pluggy's order: last first
            found = self._call(impl, "compare_variant", ref=ref, sets=list(sets))
            if found is not None:
                return found
        return None

    def register_commands(self, cli: Any) -> None:
        """Let every plugin add commands to the typer app ``cli``; a plugin whose hook raises,
        or that reuses a command name, is reported and the rest go on."""
        for impl in self._impls("register_commands"):
            before = _snapshot(cli)
            try:
                self._call(impl, "register_commands", cli=cli)
            except NstkitError as exc:
                self._failed(impl.plugin_name, str(exc).removeprefix(
                    f"plugin {impl.plugin_name!r}: "))
                continue
            clash = _drop_clashes(cli, before)
            if clash:
                self._failed(impl.plugin_name, f"register_commands: command name(s) "
                                               f"{', '.join(clash)} already taken; ignored")

    def info(self) -> list[PluginInfo]:
        """Every plugin with its distribution and what it registers (failed ones included)."""
        infos: dict[str, PluginInfo] = {}
        for name, plugin in self.pm.list_name_plugin():
            dist = self.distributions.get(name, (None, None))
            hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or ())
            infos[name] = PluginInfo(name, *dist, hooks=hooks)
        for kind in _KINDS:
            for entry in self.registry(kind):
                infos[entry.plugin].components.setdefault(kind, []).append(entry.name)
        for name, error in self.load_failures.items():
            infos.setdefault(name, PluginInfo(name, *self.distributions.get(name, (None, None))))
            infos[name].error = error
        return list(infos.values())


def _command_name(item: Any) -> str:
    """A typer command's or group's name as the command line shows it."""
    name = item.name or getattr(getattr(item, "callback", None), "__name__", "") or ""
    return name.replace("_", "-")


def _snapshot(cli: Any) -> list[Any]:
    return [*cli.registered_commands, *cli.registered_groups]


def _drop_clashes(cli: Any, before: list[Any]) -> list[str]:
    """Remove the commands or groups added since ``before`` whose names were already taken;
    return those names."""
    taken = {_command_name(item) for item in before}
    clashes = []
    for attribute in ("registered_commands", "registered_groups"):
        kept = []
        for item in getattr(cli, attribute):
            new = not any(item is old for old in before)
            if new and _command_name(item) in taken:
                clashes.append(_command_name(item))
                continue
            if new:
                taken.add(_command_name(item))
            kept.append(item)
        setattr(cli, attribute, kept)
    return clashes


_host: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide plugin host, created (and plugins loaded) on first use."""
    global _host
    if _host is None:
        _host = PluginHost()
    return _host


def reset_host() -> None:
    """Forget the process-wide host, so the next :func:`get_host` reloads plugins."""
    global _host
    _host = None

