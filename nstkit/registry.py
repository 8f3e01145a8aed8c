"""Name -> factory tables filled by the ``register`` callbacks that plugins receive."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from nstkit.errors import ComponentClashError, UnknownComponentError


@dataclass(frozen=True)
class Entry:
    """One registered component: its name, factory and the plugin that registered it."""

    name: str
    factory: Callable[..., Any]
    plugin: str
    description: str


def factory_key(factory: Callable[..., Any]) -> Hashable:
    """A key equal for equal factories, for caches of what they build.

    ``functools.partial`` objects compare by identity, and a plugin host registers new ones
    each time it is created; two partials of the same function and arguments get one key.
    """
    if isinstance(factory, partial):
        keywords = tuple(sorted((k, repr(v)) for k, v in factory.keywords.items()))
        return (factory_key(factory.func), tuple(map(repr, factory.args)), keywords)
    return factory


def suggest(name: str, choices: list[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


class Registry:
    """A table of components of one kind (``"loss"``, ``"extractor"``, ``"optimizer"``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._blocked: dict[str, str] = {}
        self.load_failures: dict[str, str] = {}

    def register(
        self, name: str, factory: Callable[..., Any], *, plugin: str, description: str = ""
    ) -> None:
        """Add ``name``; raise :class:`ComponentClashError` naming both plugins on a clash."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"{self.kind} names must be non-empty strings, got {name!r}")
        if not callable(factory):
            raise TypeError(f"{self.kind} {name!r}: factory must be callable, got {factory!r}")
        if name in self._entries:
            other = self._entries[name].plugin
            raise ComponentClashError(
                f"{self.kind} {name!r} is registered by both {other!r} and {plugin!r}; "
                f"uninstall or block one of them (NSTKIT_BLOCK_PLUGINS={plugin})"
            )
        doc = (factory.__doc__ or "").strip().splitlines()
        self._entries[name] = Entry(name, factory, plugin, description or (doc[0] if doc else ""))

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
