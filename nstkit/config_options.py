"""A component's options model: declared at registration, or read from its factory.

Below :mod:`nstkit.config_schema` and :mod:`nstkit.config_errors`, which both use it.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Hashable
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, create_model

from nstkit.config import Options
from nstkit.registry import Entry, factory_key


def options_from_signature(factory: Callable[..., Any], skip: int = 0,
                           reserved: tuple[str, ...] = ()) -> type[BaseModel]:
    """An options model read from ``factory``'s keyword parameters after the first ``skip``.

    Annotations pydantic understands are checked; others (or none) accept any value. A factory
    taking ``**kwargs`` accepts any other option too.
    """
    try:
        params = list(inspect.signature(factory).parameters.values())[skip:]
    except (TypeError, ValueError):
        return type("AnyOptions", (Options,), {"model_config": ConfigDict(extra="allow")})
    hints = _type_hints(factory)
    fields: dict[str, Any] = {}
    for param in params:
        if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY) or \
                param.name in reserved:
            continue
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (_checkable(hints.get(param.name, Any)), default)
    extra = "allow" if any(p.kind is p.VAR_KEYWORD for p in params) else "forbid"
    base = type(f"{getattr(factory, '__name__', 'Factory')}Options", (Options,),
                {"model_config": ConfigDict(extra=extra)})
    return create_model(base.__name__, __base__=base, **fields)


def _checkable(annotation: Any) -> Any:
    """``annotation`` if pydantic can check it and describe it in JSON Schema, else ``Any``
    (a class such as ``torch.device``)."""
    try:
        TypeAdapter(annotation).json_schema()
    except Exception:
        return Any
    return annotation


def _type_hints(factory: Callable[..., Any]) -> dict[str, Any]:
    """The factory's resolved parameter annotations; none when one of them cannot be resolved
    (a name imported only under ``TYPE_CHECKING``): declare an options model then."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        return typing.get_type_hints(target)
    except Exception:
        return {}


_signature_models: dict[Hashable, type[BaseModel]] = {}


def options_model(entry: Entry, skip: int, reserved: tuple[str, ...]) -> type[BaseModel]:
    """The component's declared options model, else one read from its factory (once per
    factory)."""
    if entry.options is not None:
        return entry.options
    key = (factory_key(entry.factory), skip, reserved)
    if key not in _signature_models:
        _signature_models[key] = options_from_signature(entry.factory, skip, reserved)
    return _signature_models[key]
