from __future__ import annotations

import inspect
import subprocess
import sys
import types
from importlib import metadata

import pytest
import torch

import nstkit
from nstkit import hookspecs
from nstkit.errors import ComponentClashError, ConfigError, PluginError, UnknownComponentError
from nstkit.losses import LossTerm
from nstkit.plugins import PluginHost


class MeanBrightness(LossTerm):
    """Pulls the mean pixel value towards ``target``."""

    def __init__(self, layers=None, target: float = 0.5) -> None:
        super().__init__({})
        self.target = target

    def forward(self, image, features):
        return (image.mean() - self.target) ** 2


def test_builtins_are_registered_through_the_hooks(host: PluginHost) -> None:
    assert host.extractors.names() == ["vgg16", "vgg19"]
    assert host.losses.names() == ["colour", "content", "gram", "histogram", "keep", "mean_std",
                                   "shifted_gram", "sliced_wasserstein", "tv", "wasserstein"]
    assert host.optimizers.names() == ["adam", "lbfgs", "sgd"]
    assert host.losses.entry("gram").plugin == "nstkit.default_plugins.losses"


@pytest.mark.slow
def test_a_plugin_loss_is_usable_by_name(host: PluginHost, make_plugin) -> None:
    def register_losses(register):
        register("brightness", MeanBrightness)

    host.add(make_plugin(register_losses=register_losses), name="nstkit-brightness")
    assert host.losses.entry("brightness").plugin == "nstkit-brightness"
    result = nstkit.stylize(
        torch.full((1, 3, 8, 8), 0.9), torch.rand(1, 3, 8, 8), size=None, iterations=100,
        losses=[{"name": "brightness", "weight": 1.0, "target": 0.2}],
        optimizer="adam", optimizer_options={"lr": 0.05}, host=host, device="cpu",
    )
    assert result.history["brightness"][-1] < 0.01 * result.history["brightness"][0]
    assert result.image.mean().item() == pytest.approx(0.2, abs=0.05)


def test_a_name_clash_names_both_plugins(host: PluginHost, make_plugin) -> None:
    def register_losses(register):
        register("gram", MeanBrightness)

    host.add(make_plugin(register_losses=register_losses), name="nstkit-copycat")
    message = ("loss 'gram' is registered by both 'nstkit.default_plugins.losses' and "
               "'nstkit-copycat'; uninstall or block one of them "
               "(NSTKIT_BLOCK_PLUGINS=nstkit-copycat)")
    with pytest.warns(RuntimeWarning, match="'nstkit-copycat' failed: loss 'gram'"):
        losses = host.losses
    with pytest.raises(ComponentClashError) as info:
        losses.entry("gram")  # neither plugin's 'gram' is used silently
    assert str(info.value) == message
    assert losses.entry("content").plugin == "nstkit.default_plugins.losses"
    assert host.load_failures["nstkit-copycat"] == message


def test_an_unknown_name_lists_the_available_ones(host: PluginHost) -> None:
    with pytest.raises(UnknownComponentError) as info:
        host.losses.entry("shifted_gramm")
    assert str(info.value) == (
        "unknown loss 'shifted_gramm'. Did you mean 'shifted_gram'? "
        "Available: colour, content, gram, histogram, keep, mean_std, shifted_gram, "
        "sliced_wasserstein, tv, wasserstein."
    )
    with pytest.raises(ConfigError, match=r"optimizer\.name: unknown optimizer 'bfgs'\. .*"
                                          r"Available: adam, lbfgs, sgd"):
        nstkit.stylize(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), iterations=1,
                       optimizer="bfgs", losses=[{"name": "tv"}], host=host, device="cpu")


def test_an_exception_inside_a_plugin_names_the_plugin(host: PluginHost, make_plugin) -> None:
    def register_optimizers(register):
        raise RuntimeError("boom")

    host.add(make_plugin(register_optimizers=register_optimizers), name="nstkit-broken")
    with pytest.warns(RuntimeWarning, match="'nstkit-broken' failed: register_optimizers raised"):
        optimizers = host.optimizers
    assert optimizers.names() == ["adam", "lbfgs", "sgd"]  # the others keep working
    assert host.load_failures["nstkit-broken"] == "register_optimizers raised RuntimeError: boom"
    with pytest.raises(UnknownComponentError, match="plugin 'nstkit-broken' failed to load"):
        optimizers.entry("broken-one")


@pytest.mark.slow
def test_lifecycle_hooks_see_every_step(host: PluginHost, make_plugin) -> None:
    events: list[tuple] = []
    plugin = make_plugin(
        on_job_start=lambda job: events.append(("start", job.iterations, job.size)),
        on_step=lambda job, step, losses: events.append(("step", step, sorted(losses))),
        on_job_end=lambda job, result, error: events.append(("end", result.iterations, error)),
    )
    host.add(plugin, name="recorder")
    nstkit.stylize(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), size=None, iterations=3,
                   losses=[{"name": "tv"}], optimizer="sgd", host=host, device="cpu")
    assert events == [("start", 3, (8, 8)), ("step", 1, ["total", "tv"]),
                      ("step", 2, ["total", "tv"]), ("step", 3, ["total", "tv"]),
                      ("end", 3, None)]


@pytest.mark.slow
def test_a_failing_lifecycle_hook_names_the_plugin(host: PluginHost, make_plugin) -> None:
    def on_step(job, step):
        raise ValueError("disk full")

    host.add(make_plugin(on_step=on_step), name="nstkit-logger")
    with pytest.raises(PluginError, match="plugin 'nstkit-logger': on_step raised ValueError"):
        nstkit.stylize(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), iterations=2,
                       losses=[{"name": "tv"}], host=host, device="cpu")


@pytest.mark.slow
def test_a_loss_that_is_not_a_scalar_is_reported(host: PluginHost, make_plugin) -> None:
    class Vector(MeanBrightness):
        def forward(self, image, features):
            return image.mean(dim=(1, 2, 3))

    host.add(make_plugin(register_losses=lambda register: register("vector", Vector)), name="vec")
    with pytest.raises(nstkit.errors.LossError,
                       match=r"'vector' \(plugin 'vec'\) must return a scalar"):
        nstkit.stylize(torch.rand(2, 3, 8, 8), torch.rand(1, 3, 8, 8), iterations=1,
                       losses=[{"name": "vector"}], host=host, device="cpu")


class _EntryPoint:
    def __init__(self, name: str, target) -> None:
        self.name, self._target = name, target
        self.dist = types.SimpleNamespace(name=f"dist-{name}", version="1.2.3")

    def load(self):
        return self._target()


def _fake_entry_points(monkeypatch: pytest.MonkeyPatch, *eps: _EntryPoint) -> None:
    monkeypatch.setattr(metadata, "entry_points", lambda group: list(eps))


def test_entry_point_plugins_load_and_broken_ones_are_reported(monkeypatch, make_plugin) -> None:
    good = make_plugin(register_losses=lambda register: register("brightness", MeanBrightness))

    def broken():
        raise ImportError("No module named 'missing_dependency'")

    _fake_entry_points(monkeypatch, _EntryPoint("good", lambda: good),
                       _EntryPoint("bad", broken))
    with pytest.warns(RuntimeWarning, match="'bad' failed to load"):
        host = PluginHost(autoload=True)
    assert "brightness" in host.losses
    infos = {info.name: info for info in host.info()}
    assert infos["good"].distribution == "dist-good"
    assert infos["good"].components == {"loss": ["brightness"]}
    assert infos["bad"].error == "ImportError: No module named 'missing_dependency'"
    with pytest.raises(UnknownComponentError, match="plugin 'bad' failed to load"):
        host.losses.entry("nope")


def test_environment_allow_and_block_lists(monkeypatch, make_plugin) -> None:
    loaded: list[str] = []

    def make(name):
        def load():
            loaded.append(name)
            return make_plugin(register_losses=lambda register: register(name, MeanBrightness))
        return load

    _fake_entry_points(monkeypatch, *(_EntryPoint(n, make(n)) for n in ("a", "b", "c")))
    monkeypatch.setenv("NSTKIT_BLOCK_PLUGINS", "b")
    PluginHost(autoload=True)
    assert loaded == ["a", "c"]
    loaded.clear()
    monkeypatch.setenv("NSTKIT_PLUGINS", "c")
    PluginHost(autoload=True)
    assert loaded == ["c"]
    loaded.clear()
    monkeypatch.setenv("NSTKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    PluginHost()
    assert loaded == []


@pytest.mark.slow
def test_plugins_are_not_loaded_by_importing_nstkit() -> None:
    code = ("import sys, nstkit, nstkit.plugins; "
            "print(any(m.startswith('nstkit.default_plugins.') for m in sys.modules), "
            "nstkit.plugins._host)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "None"]


def test_every_hookspec_is_documented() -> None:
    specs = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
             if hasattr(fn, "nstkit_spec")]
    assert sorted(specs) == sorted(hookspecs.HOOK_NAMES)
    for name in specs:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert "Called" in doc, name
        assert "Args:" in doc, name
