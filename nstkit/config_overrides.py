"""Keyword overrides of a :class:`~nstkit.config.StylizeConfig`, validated once.

:func:`nstkit.stylize` takes config keys as keywords (``size=256``, ``losses=[...]``) and the
shorthands its keyword API has always had, each one a change of config keys:

============================  ===========================================================
``iterations``                ``optimizer.iterations``
``optimizer`` (a name)        ``optimizer.name`` (the other optimiser options are dropped)
``optimizer_options``         the optimiser's own options
``extractor`` (a name)        ``extractor.name`` (the other extractor options are dropped)
``pooling``, ``weights``      ``extractor.pooling``, ``extractor.weights``
``extractor_options``         the extractor's own options
``content_layers``, ...       ``content_weight``, ``style_layers``, ``style_weight``,
                              ``tv_weight``, ``style_loss``: the Gatys terms as ``losses``
``multiscale`` (pairs)        ``multiscale.scales`` and ``multiscale.iterations``
``multiscale_detail``         ``multiscale.detail``
============================  ===========================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nstkit.config import StylizeConfig
from nstkit.errors import ConfigError

if TYPE_CHECKING:
    from nstkit.plugins import PluginHost

# keywords whose None means "not given", as in the keyword API's signature
OPTIONAL = ("losses", "optimizer_options", "extractor_options", "content_layers",
            "style_layers", "style_weight")
GATYS_KEYS = ("content_layers", "style_layers", "content_weight", "style_weight", "tv_weight",
              "style_loss")


def apply_overrides(config: StylizeConfig, overrides: Mapping[str, Any],
                    host: PluginHost, *, check_layers: bool = True) -> StylizeConfig:
    """``config`` with ``overrides`` applied and validated against the host's components
    (``config`` itself is returned unchanged, not revalidated, when there are none).

    Raises:
        ConfigError: every problem of the result, ``key.path: message`` each.
    """
    if not isinstance(config, StylizeConfig):
        raise TypeError(f"config must be a StylizeConfig (a recipe's .config), got "
                        f"{type(config).__name__}")
    overrides = {key: value for key, value in overrides.items()
                 if not (value is None and key in OPTIONAL)}
    if not overrides:
        return config
    data = config.model_dump()
    # a component's options as given, not its defaults
    data["extractor"] = config.extractor.model_dump(exclude_unset=True)
    data["optimizer"] = {"iterations": config.optimizer.iterations,
                         **config.optimizer.model_dump(exclude_unset=True)}
    data["losses"] = [term.model_dump(exclude_unset=True) for term in config.losses]
    if config.multiscale is not None:  # its two forms: only the keys of the one given
        data["multiscale"] = config.multiscale.model_dump(exclude_unset=True)
    data.pop("version", None), data.pop("name", None), data.pop("description", None)
    for key, value in _expand(dict(overrides), data).items():
        data[key] = value
    from nstkit.config_schema import validate_config

    resolved, problems = validate_config(data, host, lambda path: "stylize()", build=False,
                                         check_layers=check_layers)
    if resolved is None:
        raise ConfigError(problems)
    return StylizeConfig.model_validate(resolved.model_dump(
        exclude_unset=True, exclude={"version", "name", "description"}))


def _expand(overrides: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """The overrides as top-level config keys (shorthands expanded onto ``data``'s values)."""
    changes: dict[str, Any] = {}
    extractor, optimizer = dict(data["extractor"]), dict(data["optimizer"])
    if "extractor" in overrides:
        extractor = _section(overrides.pop("extractor"))
    for key in ("pooling", "weights"):
        if key in overrides:
            extractor[key] = overrides.pop(key)
    extractor.update(overrides.pop("extractor_options", None) or {})
    if "optimizer" in overrides:
        optimizer = {"iterations": optimizer["iterations"], **_section(overrides.pop("optimizer"))}
    if "iterations" in overrides:
        optimizer["iterations"] = overrides.pop("iterations")
    optimizer.update(overrides.pop("optimizer_options", None) or {})
    changes["extractor"], changes["optimizer"] = extractor, optimizer
    gatys = {key: overrides.pop(key) for key in GATYS_KEYS if key in overrides}
    if gatys and "losses" not in overrides:
        if data["losses"] != [t.model_dump(exclude_unset=True)
                              for t in StylizeConfig().losses]:
            raise ConfigError([f"stylize(): {', '.join(gatys)} set the Gatys terms, but this "
                               f"config has losses of its own; change those with losses=[...]"])
        changes["losses"] = gatys_losses(**gatys)
    if "losses" in overrides:
        changes["losses"] = [_plain(term) for term in overrides.pop("losses")]
    changes.update(_multiscale(overrides, data.get("multiscale")))
    changes.update(overrides)
    return changes


def gatys_losses(content_layers: Any = None, style_layers: Any = None,
                 content_weight: float = 1.0, style_weight: float | None = None,
                 tv_weight: float = 0.0, style_loss: str = "gram") -> list[dict[str, Any]]:
    """Gatys et al. 2016 as ``losses``: content (default ``relu4_2``) and a style loss
    (default Gram on ``relu1_1 .. relu5_1``, weighted as the default config), plus TV."""
    defaults = StylizeConfig().losses
    terms = [{"name": "content", "weight": content_weight,
              "layers": content_layers if content_layers is not None else defaults[0].layers},
             {"name": style_loss,
              "weight": style_weight if style_weight is not None else defaults[1].weight,
              "layers": style_layers if style_layers is not None else defaults[1].layers}]
    if tv_weight:
        terms.append({"name": "tv", "weight": tv_weight})
    return terms


def _section(value: Any) -> Any:
    """``extractor=``/``optimizer=``: a name, or the whole mapping."""
    return {"name": value} if isinstance(value, str) else value


def _plain(term: Any) -> Any:
    if hasattr(term, "model_dump"):
        return term.model_dump(exclude_unset=True)
    if isinstance(term, Mapping) and "options" in term and isinstance(term["options"], Mapping):
        return {**{k: v for k, v in term.items() if k != "options"}, **term["options"]}
    return term


def _multiscale(overrides: dict[str, Any], current: Any) -> dict[str, Any]:
    detail = overrides.pop("multiscale_detail", None)
    if "multiscale" not in overrides and detail is None:
        return {}
    value = overrides.pop("multiscale", current)
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple)):
        value = {"scales": [s for s, _ in value], "iterations": [i for _, i in value]}
    if isinstance(value, Mapping) and detail is not None:
        value = {**value, "detail": detail}
    return {"multiscale": value}
