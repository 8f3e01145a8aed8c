"""One test per hook of nstkit/hookspecs.py: when it is called and with what
(tests/test_plugin_guide.py checks that each hook has its ``test_hook_<name>``)."""

from __future__ import annotations

import types

import pytest
import torch

import nstkit
from nstkit.errors import LossError
from nstkit.job import JobInfo
from nstkit.losses import LossTerm
from nstkit.plugins import PluginHost
from nstkit.testing import TinyExtractor, make_host, stylize_tiny, tiny_images


def _stylize(host: PluginHost, **options) -> nstkit.StyleResult:
    options.setdefault("losses", [{"name": "content"}, {"name": "tv"}])
    return stylize_tiny(host, size=16, **options)


class Darkness(LossTerm):
    """Mean pixel value (reads no layers)."""

    def __init__(self, layers=None, power: float = 1.0) -> None:
        super().__init__({})
        self.power = power

    def forward(self, image, features):
        return image.mean() ** self.power


def test_hook_register_extractors(make_plugin) -> None:
    calls: list[dict] = []

    def factory(*, pooling: str = "max", weights: str | None = None) -> TinyExtractor:
        calls.append({"pooling": pooling, "weights": weights})
        return TinyExtractor(width=2)

    registered: list[int] = []

    def register_extractors(register):
        registered.append(1)
        register("tiny", factory, description="a tiny stand-in")

    host = make_host(make_plugin(register_extractors=register_extractors))
    assert registered == []  # lazily: not when the plugin is registered
    assert host.extractors.entry("tiny").description == "a tiny stand-in"
    assert host.extractors.names() == ["tiny", "vgg16", "vgg19"]
    assert registered == [1]  # once per host
    result = _stylize(host, extractor="tiny", pooling="avg", iterations=1)
    assert calls == [{"pooling": "avg", "weights": None}]
    assert result.settings["extractor"] == {"name": "tiny", "pooling": "avg"}
    assert registered == [1]


def test_hook_register_losses(make_plugin) -> None:
    registered: list[int] = []

    def register_losses(register):
        registered.append(1)
        register("darkness", Darkness)

    host = make_host(make_plugin(register_losses=register_losses))
    assert registered == []
    assert host.losses.entry("darkness").factory is Darkness
    host.losses.entry("gram")  # a second lookup does not call the hook again
    assert registered == [1]
    result = _stylize(host, iterations=10, optimizer="adam", optimizer_options={"lr": 0.05},
                      losses=[{"name": "darkness", "weight": 1.0, "power": 2.0}])
    history = result.history["darkness"]
    assert history[0] == pytest.approx(tiny_images(16).content.mean().item() ** 2, rel=1e-5)
    assert history[-1] < 0.5 * history[0]


def test_hook_register_optimizers(make_plugin) -> None:
    seen: list = []

    class Recording(torch.optim.SGD):
        def step(self, closure=None):
            seen.append("step")
            return super().step(closure)

    def factory(params, lr: float = 0.1):
        params = list(params)
        seen.append((len(params), tuple(params[0].shape), params[0].requires_grad, lr))
        return Recording(params, lr=lr)

    host = make_host(make_plugin(register_optimizers=lambda register: register("rec", factory)))
    assert host.optimizers.names() == ["adam", "lbfgs", "rec", "sgd"]
    _stylize(host, iterations=3, optimizer="rec", optimizer_options={"lr": 0.5})
    assert seen == [(1, (1, 3, 16, 16), True, 0.5), "step", "step", "step"]


def _recorder(make_plugin, events: list) -> types.SimpleNamespace:
    """A plugin appending every lifecycle hook call to ``events``."""
    return make_plugin(
        on_job_start=lambda job: events.append(("start", job)),
        on_step=lambda job, step, losses, image: events.append(("step", step, dict(losses),
                                                                image.clone(), image)),
        on_job_end=lambda job, result, error: events.append(("end", job, result, error)),
    )


def test_hook_on_job_start(make_plugin) -> None:
    events: list = []
    host = make_host(_recorder(make_plugin, events))
    _stylize(host, iterations=2, job_name="cat", job_extra={"recipe": "test"})
    kinds = [event[0] for event in events]
    assert kinds == ["start", "step", "step", "end"]  # once, before the first step
    job = events[0][1]
    assert isinstance(job, JobInfo)
    assert (job.name, job.iterations, job.device, job.size) == ("cat", 2, "cpu", (16, 16))
    assert job.extra == {"recipe": "test"}


def test_hook_on_step(make_plugin) -> None:
    events: list = []
    host = make_host(_recorder(make_plugin, events))
    result = _stylize(host, iterations=3, optimizer="adam")
    steps = [event for event in events if event[0] == "step"]
    assert [event[1] for event in steps] == [1, 2, 3]
    for index, (_, _, losses, copy, image) in enumerate(steps):
        assert set(losses) == {"content", "tv", "total"}
        assert all(isinstance(value, float) for value in losses.values())
        # the weighted losses of the image the step started from, as in the history
        assert losses == {name: values[index] for name, values in result.history.items()}
        assert copy.shape == (1, 3, 16, 16)
        assert not image.requires_grad
        assert copy.min() >= 0
        assert copy.max() <= 1
    assert not torch.equal(steps[0][3], steps[-1][3])  # the image changes from step to step


def test_hook_on_step_with_a_subset_of_the_arguments(make_plugin) -> None:
    steps: list[int] = []
    host = make_host(make_plugin(on_step=lambda step: steps.append(step)))
    _stylize(host, iterations=2)
    assert steps == [1, 2]


class Exploding(Darkness):
    """Becomes NaN at the second evaluation."""

    calls = 0

    def forward(self, image, features):
        self.calls += 1
        return super().forward(image, features) * (float("nan") if self.calls > 1 else 1.0)


def test_hook_on_job_end(make_plugin) -> None:
    events: list = []
    host = make_host(_recorder(make_plugin, events),
                     make_plugin(register_losses=lambda register: register("exploding", Exploding)))
    result = _stylize(host, iterations=1)
    assert events[-1] == ("end", events[0][1], result, None)  # success: the result, no error

    events.clear()
    with pytest.raises(LossError) as info:
        _stylize(host, iterations=3, optimizer="sgd", losses=[{"name": "exploding"}])
    assert [event[0] for event in events] == ["start", "step", "end"]
    _, _, result, error = events[-1]  # failure: no result, the error that is re-raised
    assert result is None
    assert error is info.value


def test_hook_register_commands(make_plugin, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer
    from typer.testing import CliRunner

    import nstkit.cli

    def hello(name: str = "world") -> None:
        """Say hello."""
        typer.echo(f"hello {name}")

    def register_commands(cli: typer.Typer) -> None:
        cli.command()(hello)

    def broken(cli: typer.Typer) -> None:
        raise RuntimeError("no commands today")

    host = make_host(make_plugin(register_commands=register_commands))
    host.add(make_plugin(register_commands=broken), name="broken")
    monkeypatch.delenv("NSTKIT_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.setattr("nstkit.plugins.get_host", lambda: host)
    app = typer.Typer()
    app.command()(lambda: None)  # the app has commands of its own, as nstkit's does
    monkeypatch.setattr(nstkit.cli, "app", app)
    with pytest.warns(RuntimeWarning, match="register_commands raised RuntimeError"):
        nstkit.cli._plugin_commands()  # what the CLI does at start-up
    result = CliRunner().invoke(app, ["hello", "--name", "nstkit"])
    assert result.exit_code == 0, result.output
    assert result.output == "hello nstkit\n"
    assert "no commands today" in host.load_failures["broken"]
    # a second plugin taking the same name is dropped and reported; the first one stays
    def copycat(cli: typer.Typer) -> None:
        cli.command(name="hello")(lambda: typer.echo("not me"))

    host.remove("broken")
    host.add(make_plugin(register_commands=copycat), name="copycat")
    with pytest.warns(RuntimeWarning, match="hello already taken"):
        host.register_commands(app)
    assert CliRunner().invoke(app, ["hello"]).output == "hello world\n"
    assert "hello already taken" in host.load_failures["copycat"]
