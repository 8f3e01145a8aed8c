"""nstkit: plugin-based batch toolkit for optimisation-based neural style transfer.

``import nstkit`` is light (no torch): :func:`stylize` and the result and config types load
on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nstkit.hookspecs import hookimpl

if TYPE_CHECKING:
    from nstkit.config import LossTermConfig, StylizeConfig
    from nstkit.result import StyleResult
    from nstkit.stylisation import LossSpec, stylize

__version__ = "0.1.0"
__all__ = ["LossSpec", "LossTermConfig", "StyleResult", "StylizeConfig", "__version__",
           "hookimpl", "stylize"]

_LAZY = {"stylize": "nstkit.stylisation", "LossSpec": "nstkit.stylisation",
         "StyleResult": "nstkit.result", "StylizeConfig": "nstkit.config",
         "LossTermConfig": "nstkit.config"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nstkit' has no attribute {name!r}")
