"""Exceptions raised by nstkit. Every message says what is wrong and, where it can, the fix."""

from __future__ import annotations


class NstkitError(Exception):
    """Base class of every error nstkit raises on purpose."""


class UnknownComponentError(NstkitError, KeyError):
    """A name that no plugin registered (extractor, loss, optimiser, layer)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ComponentClashError(NstkitError):
    """Two plugins registered the same component name."""


class PluginError(NstkitError):
    """A plugin failed to import, raised inside a hook, or broke a contract."""

    def __init__(self, plugin: str, message: str) -> None:
        super().__init__(f"plugin {plugin!r}: {message}")
        self.plugin = plugin


class WeightsError(NstkitError):
    """Model weights could not be found, read or matched to the architecture."""


class ImageError(NstkitError, ValueError):
    """An image file that cannot be read: missing, damaged, not an image, or too large."""


class LossError(NstkitError):
    """A loss term produced something that is not a finite scalar."""


class RecipeError(NstkitError):
    """A recipe that cannot be read or does not validate; lists every problem found.

    Attributes:
        problems: one ``"<file>: <key path>: <what is wrong>"`` line per problem.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class ConfigError(RecipeError, ValueError):
    """A stylisation's configuration (keywords of :func:`nstkit.stylize`) does not validate."""
