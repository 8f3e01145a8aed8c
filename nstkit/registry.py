"""Name -> factory tables filled by the ``register`` callbacks that plugins receive."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from functools import cached_property, partial
from importlib import import_module
from typing import TYPE_CHECKING, Any

from nstkit.errors import ComponentClashError, PluginError, UnknownComponentError
from nstkit.layers import suggest

if TYPE_CHECKING:
    from pydantic import BaseModel

    from nstkit.layers import LayerTable


@dataclass(frozen=True)
class Entry:
    """One registered component.

    Attributes:
        name: what recipes call it.
        target: the factory, or ``"module:attribute"`` naming it (imported on first use, so
            registering a component imports nothing heavy).
        plugin: the plugin that registered it.
        description: one line for listings.
        options: a pydantic model of the factory's options, or ``None`` to read them from the
            factory's signature (which imports the factory).
        layers: an extractor's :class:`nstkit.layers.LayerTable`, or ``None`` to learn the
            layer names by building the extractor.
    """

    name: str
    target: Callable[..., Any] | str
    plugin: str
    description: str = ""
    options: type[BaseModel] | None = None
    layers: LayerTable | None = None

    @cached_property
    def factory(self) -> Callable[..., Any]:
        """The factory, imported on first use for a ``"module:attribute"`` target.

        Raises:
            PluginError: the module or attribute cannot be imported.
        """
        if not isinstance(self.target, str):
            return self.target
        module, _, attribute = self.target.partition(":")
        try:
            found = getattr(import_module(module), attribute)
        except Exception as exc:
            raise PluginError(self.plugin, f"{self.name!r}: cannot import {self.target}: "
                                           f"{type(exc).__name__}: {exc}") from exc
        if not callable(found):
            raise PluginError(self.plugin, f"{self.name!r}: {self.target} is not callable")
        return found


def factory_key(factory: Callable[..., Any]) -> Hashable:
    """A key equal for equal factories, for caches of what they build.

    ``functools.partial`` objects compare by identity, and a plugin host registers new ones
    each time it is created; two partials of the same function and arguments get one key.
    """
    if isinstance(factory, partial):
        keywords = tuple(sorted((k, repr(v)) for k, v in factory.keywords.items()))
        return (factory_key(factory.func), tuple(map(repr, factory.args)), keywords)
    return factory


def _first_line(factory: Callable[..., Any] | str, options: type[BaseModel] | None) -> str:
    """The first docstring line of the options model or of a callable factory."""
    source = options if options is not None else factory
    doc = "" if isinstance(source, str) else (source.__doc__ or "")
    lines = doc.strip().splitlines()
    return lines[0] if lines else ""


def _check_options_model(kind: str, name: str, options: object) -> None:
    from pydantic import BaseModel

    if not (isinstance(options, type) and issubclass(options, BaseModel)):
        raise TypeError(f"{kind} {name!r}: options must be a pydantic model class, "
                        f"got {options!r}")


class Registry:
    """A table of components of one kind (``"loss"``, ``"extractor"``, ``"optimizer"``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._blocked: dict[str, str] = {}
        self.load_failures: dict[str, str] = {}

    def register(self, name: str, factory: Callable[..., Any] | str, *, plugin: str,
                 description: str = "", options: type[BaseModel] | None = None,
                 layers: LayerTable | None = None) -> None:
        """Add ``name``; raise :class:`ComponentClashError` naming both plugins on a clash.

        ``factory`` is a callable or a ``"module:attribute"`` string imported on first use.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"{self.kind} names must be non-empty strings, got {name!r}")
        lazy = isinstance(factory, str) and ":" in factory
        if not lazy and not callable(factory):
            raise TypeError(f"{self.kind} {name!r}: factory must be callable or "
                            f"'module:attribute', got {factory!r}")
        if options is not None:
            _check_options_model(self.kind, name, options)
        if name in self._entries:
            other = self._entries[name].plugin
            raise ComponentClashError(
                f"{self.kind} {name!r} is registered by both {other!r} and {plugin!r}; "
                f"uninstall or block one of them (NSTKIT_BLOCK_PLUGINS={plugin})"
            )
        self._entries[name] = Entry(name, factory, plugin,
                                    description or _first_line(factory, options), options, layers)

    def block(self, name: str, reason: str) -> None:
        """Make ``name`` unusable (two plugins registered it): looking it up raises ``reason``."""
        self._entries.pop(name, None)
        self._blocked[name] = reason

    def entry(self, name: str) -> Entry:
        """The entry for ``name``; unknown names list the available ones with a did-you-mean."""
        if name in self._blocked:
            raise ComponentClashError(self._blocked[name])
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownComponentError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        names = sorted(self._entries)
        message = f"unknown {self.kind} {name!r}.{suggest(str(name), names)}"
        message += f" Available: {', '.join(names) or '(none)'}."
        for plugin, error in self.load_failures.items():
            message += f" Note: plugin {plugin!r} failed to load ({error})."
        return message

    def get(self, name: str) -> Callable[..., Any]:
        """The factory registered under ``name``."""
        return self.entry(name).factory

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._blocked

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries[name] for name in sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
