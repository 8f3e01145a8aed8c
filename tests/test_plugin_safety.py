"""A broken plugin gives an error naming it, and the rest of nstkit keeps working.

Complements tests/test_plugins.py (which covers: import failure reported by the host, an
exception in a hook named, the clash message, a non-scalar loss rejected).
"""

from __future__ import annotations

import types
from collections.abc import Callable
from importlib import metadata

import pytest
import torch
from typer.testing import CliRunner

from nstkit.cli import app
from nstkit.errors import LossError, PluginError
from nstkit.losses import LossTerm, TVLoss
from nstkit.plugins import PluginHost
from nstkit.testing import make_host, stylize_tiny

runner = CliRunner()


class _EntryPoint:
    def __init__(self, name: str, target) -> None:
        self.name, self._target = name, target
        self.dist = types.SimpleNamespace(name=f"dist-{name}", version="2.0")

    def load(self):
        return self._target()


def _install(monkeypatch: pytest.MonkeyPatch, **plugins) -> None:
    """Pretend these entry points (name -> loader) are installed, and let nstkit load them."""
    eps = [_EntryPoint(name, load) for name, load in plugins.items()]
    monkeypatch.setattr(metadata, "entry_points", lambda group: eps)
    monkeypatch.delenv("NSTKIT_DISABLE_PLUGIN_AUTOLOAD", raising=False)


@pytest.fixture
def good(make_plugin) -> Callable[[], object]:
    """The loader of a plugin registering the loss ``fine``."""
    return lambda: make_plugin(register_losses=lambda register: register("fine", TVLoss))


def _broken_import():
    raise ImportError("No module named 'torch_nonexistent'")


def test_nstkit_plugins_lists_the_others_when_one_fails_to_import(monkeypatch, good) -> None:
    _install(monkeypatch, good=good, bad=_broken_import)
    with pytest.warns(RuntimeWarning, match="'bad' failed to load"):
        result = runner.invoke(app, ["plugins"])
    assert result.exit_code == 0
    for text in ("good", "dist-good 2.0", "loss: fine", "bad", "failed", "torch_nonexistent",
                 "shifted_gram", "lbfgs"):
        assert text in result.output, text


def test_trace_hooks_prints_every_hook_call_per_plugin(monkeypatch, capsys, make_plugin) -> None:
    host = make_host(make_plugin(register_losses=lambda register: register("fine", TVLoss)))
    monkeypatch.setenv("NSTKIT_TRACE_HOOKS", "1")
    host.losses  # noqa: B018
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "nstkit: register_losses -> nstkit.default_plugins.losses"
    assert len(lines) == 2
    assert lines[1].startswith("nstkit: register_losses -> ")
    monkeypatch.delenv("NSTKIT_TRACE_HOOKS")
    make_host().optimizers  # noqa: B018
    assert capsys.readouterr().err == ""


def test_a_loss_factory_returning_something_else_names_the_plugin(make_plugin) -> None:
    host = make_host(make_plugin(register_losses=lambda register: register(
        "identity", lambda layers=None: torch.nn.Identity())))
    name = host.losses.entry("identity").plugin
    with pytest.raises(PluginError, match=f"plugin '{name}': loss 'identity' factory returned "
                                          "Identity, not an nstkit.losses.LossTerm"):
        stylize_tiny(host, losses=[{"name": "identity"}])


class _Vector(LossTerm):
    def __init__(self, layers=None) -> None:
        super().__init__({})

    def forward(self, image, features):
        return torch.stack([image.mean(), image.std()])


def test_a_non_scalar_loss_names_the_plugin(make_plugin) -> None:
    host = PluginHost(autoload=False)
    host.add(make_plugin(register_losses=lambda register: register("vector", _Vector)),
             name="nstkit-vector")
    with pytest.raises(LossError, match="must return a scalar") as info:
        stylize_tiny(host, losses=[{"name": "vector"}])
    assert "nstkit-vector" in str(info.value)


@pytest.fixture
def raising_register(make_plugin) -> Callable[[], object]:
    """The loader of a plugin whose ``register_losses`` raises."""
    def register_losses(register):
        raise RuntimeError("boom")
    return lambda: make_plugin(register_losses=register_losses)


def test_a_plugin_raising_in_a_register_hook_leaves_the_others_working(
        monkeypatch, good, raising_register) -> None:
    _install(monkeypatch, good=good, bad=raising_register)
    host = PluginHost()
    with pytest.warns(RuntimeWarning, match="'bad' failed: register_losses raised"):
        assert {"fine", "gram", "content"} <= set(host.losses.names())
    info = {i.name: i for i in host.info()}
    assert "register_losses raised RuntimeError: boom" in (info["bad"].error or "")


@pytest.fixture
def copycat(make_plugin) -> Callable[[], object]:
    """The loader of a plugin registering a second loss ``gram``."""
    return lambda: make_plugin(register_losses=lambda register: register("gram", TVLoss))


def test_nstkit_plugins_lists_the_others_when_two_plugins_clash(monkeypatch, good, copycat) -> None:
    _install(monkeypatch, good=good, copycat=copycat)
    with pytest.warns(RuntimeWarning, match="'copycat' failed: loss 'gram' is registered by"):
        result = runner.invoke(app, ["plugins"])
    assert result.exit_code == 0
    assert "failed:" in result.output  # the copycat's row says why (wrapped by the table)
    for text in ("good", "loss: fine", "copycat", "gram"):
        assert text in result.output, text


@pytest.fixture
def misspelled(make_plugin) -> Callable[[], object]:
    """The loader of a plugin implementing ``register_loss``, a hook that does not exist."""
    return lambda: make_plugin(register_loss=lambda register: register("typo", TVLoss))


def test_an_installed_plugin_with_an_unknown_hook_is_reported_not_fatal(
        monkeypatch, good, misspelled) -> None:
    _install(monkeypatch, good=good, typo=misspelled)
    with pytest.warns(RuntimeWarning, match="typo"):
        host = PluginHost()
    assert "fine" in host.losses
    assert "unknown hook 'register_loss'" in {i.name: i for i in host.info()}["typo"].error
