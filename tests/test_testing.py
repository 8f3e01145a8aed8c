"""nstkit.testing: the helpers pass on the built-ins and fail on deliberately broken components."""

from __future__ import annotations

import types
from importlib import metadata

import pytest
import torch

from nstkit import losses, optim
from nstkit.errors import PluginError
from nstkit.losses import LossTerm
from nstkit.plugins import get_host
from nstkit.testing import (
    TinyExtractor,
    TinyExtractorPlugin,
    add_tiny_extractor,
    check_loss,
    check_optimizer,
    make_host,
    stylize_tiny,
    tiny_images,
)

# --- make_host, tiny_images, TinyExtractor, stylize_tiny ---------------------------------------


class Brightness(LossTerm):
    """Pulls the mean pixel value towards ``target`` (a correct image-space loss)."""

    def __init__(self, layers=None, target: float = 0.5) -> None:
        super().__init__({})
        self.target = target

    def forward(self, image, features):
        return (image.mean() - self.target) ** 2


def test_make_host_has_the_builtins_and_the_given_plugins_only(monkeypatch, make_plugin) -> None:
    class EntryPoint:
        name, dist = "installed", None

        def load(self):
            raise AssertionError("make_host must not load entry points")

    monkeypatch.delenv("NSTKIT_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.setattr(metadata, "entry_points", lambda group: [EntryPoint()])
    plugin = make_plugin(register_losses=lambda register: register("brightness", Brightness))
    host = make_host(plugin)
    assert host.losses.names() == ["brightness", "colour", "content", "gram", "histogram",
                                   "keep", "mean_std", "shifted_gram", "sliced_wasserstein",
                                   "tv", "wasserstein"]
    assert make_host().losses.names() == [
        "colour", "content", "gram", "histogram", "keep", "mean_std", "shifted_gram",
        "sliced_wasserstein", "tv", "wasserstein"]
    assert "installed" not in {info.name for info in host.info()}


def test_make_host_imports_module_names(monkeypatch, tmp_path) -> None:
    (tmp_path / "nstkit_shout.py").write_text(
        "import nstkit\n"
        "from nstkit.losses import TVLoss\n"
        "@nstkit.hookimpl\n"
        "def register_losses(register):\n"
        "    register('shout', TVLoss)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert make_host("nstkit_shout").losses.entry("shout").plugin == "nstkit_shout"
    with pytest.raises(PluginError, match="plugin 'nstkit_missing': failed to import"):
        make_host("nstkit_missing")


def test_tiny_images_are_deterministic_in_range_and_shaped() -> None:
    a, b = tiny_images(32), tiny_images(32)
    assert torch.equal(a.content, b.content)
    assert all(torch.equal(x, y) for x, y in zip(a.styles, b.styles, strict=True))
    assert a.content.shape == (1, 3, 32, 32)
    assert [s.shape for s in a.styles] == [(1, 3, 24, 32)] * 2
    assert a.style is a.styles[0]
    for image in (a.content, *a.styles):
        assert image.min() >= 0
        assert image.max() <= 1
        assert image.std() > 0.1  # not flat: textures and edges to match
    assert not torch.allclose(a.styles[0], a.styles[1])


def test_tiny_images_honour_size_dtype_and_device(device, dtype) -> None:
    images = tiny_images(16, device=device, dtype=dtype)
    assert images.content.shape == (1, 3, 16, 16)
    assert images.content.dtype == dtype
    assert images.content.device.type == device.type
    with pytest.raises(ValueError, match="size must be at least 8"):
        tiny_images(4)


def test_tiny_extractor_mirrors_vgg19_names_and_shapes() -> None:
    extractor = TinyExtractor()
    features = extractor(tiny_images(32).content, ["relu1_1", "block4_conv2", "pool5"])
    assert {k: tuple(v.shape) for k, v in features.items()} == {
        "relu1_1": (1, 4, 32, 32), "relu4_2": (1, 16, 4, 4), "pool5": (1, 16, 1, 1)}
    assert extractor(tiny_images(32).content, []) == {}
    again = TinyExtractor()(tiny_images(32).content, ["relu4_2"])["relu4_2"]
    assert torch.equal(again, features["relu4_2"])  # fixed seed


def test_tiny_extractor_plugin_registers_tiny_for_recipes_by_name() -> None:
    from nstkit.stylisation import stylize

    host = make_host(TinyExtractorPlugin())
    assert "tiny" not in make_host().extractors
    built = host.extractors.entry("tiny").factory(pooling="avg", weights="original")
    assert isinstance(built, TinyExtractor)  # VGG19's options are taken and ignored

    images = tiny_images(32)
    result = stylize(images.content, [images.style], extractor="tiny", pooling="avg",
                     iterations=2, size=None, device="cpu", host=host)
    assert result.image.shape == (1, 3, 32, 32)
    assert torch.isfinite(result.image).all()


def test_add_tiny_extractor_adds_it_once_to_the_given_or_process_host() -> None:
    host = make_host()
    assert add_tiny_extractor(host) is host
    assert add_tiny_extractor(host) is host  # a second call changes nothing
    assert host.has("tiny-extractor")
    assert "tiny" in host.extractors
    assert "tiny" not in get_host().extractors
    assert add_tiny_extractor() is get_host()
    assert "tiny" in get_host().extractors


def test_stylize_tiny_runs_a_plugin_loss_end_to_end(make_plugin) -> None:
    host = make_host(make_plugin(register_losses=lambda register: register("brightness",
                                                                       Brightness)))
    result = stylize_tiny(host, iterations=5, losses=[{"name": "brightness", "target": 0.2}])
    assert result.image.shape == (1, 3, 32, 32)
    assert result.image.mean().item() == pytest.approx(0.2, abs=0.02)


# --- check_loss --------------------------------------------------------------------------------

BUILTIN_LOSSES = {"content": losses.ContentLoss, "gram": losses.GramLoss,
                  "shifted_gram": losses.ShiftedGramLoss, "tv": losses.TVLoss,
                  "colour": losses.ColourLoss}


@pytest.mark.parametrize("name", sorted(BUILTIN_LOSSES))
def test_check_loss_passes_on_the_builtins(name: str) -> None:
    check_loss(BUILTIN_LOSSES[name])


def test_check_loss_passes_with_options_and_a_plugin_loss() -> None:
    check_loss(losses.TVLoss, options={"exponent": 2.5})
    check_loss(losses.GramLoss, layers={"block2_conv1": 0.3, "relu3_1": 0.7}, batch=1,
               styles=1)
    check_loss(Brightness, options={"target": 0.3})


class _Broken(Brightness):
    """Base of the broken losses below: ``self.good(image)`` is a correct value."""

    def good(self, image):
        return super().forward(image, {})


class NotScalar(_Broken):
    def forward(self, image, features):
        return (image - self.target).pow(2).mean(dim=(1, 2, 3))


class NaN(_Broken):
    def forward(self, image, features):
        return self.good(image) * float("nan")


class Detached(_Broken):
    def forward(self, image, features):
        return torch.tensor(self.good(image).item(), dtype=image.dtype)


class WrongDtype(_Broken):
    def forward(self, image, features):
        return self.good(image).float()


class WrongDevice(_Broken):
    def forward(self, image, features):
        return self.good(image).to("meta")


class ZeroGradient(_Broken):
    def forward(self, image, features):
        return (image * 0).sum() + 1


class InPlace(_Broken):
    def forward(self, image, features):
        image.data.clamp_(0.4, 0.6)
        return self.good(image)


class Stateful(_Broken):
    calls = 0

    def forward(self, image, features):
        self.calls += 1
        return self.good(image) * self.calls


class UndeclaredLayer(_Broken):
    def forward(self, image, features):
        return features["relu2_1"].mean()


class FailingPrepare(_Broken):
    def prepare(self, targets):
        raise KeyError("content_features")


class _DoubledGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return 2 * grad


class WrongGradient(_Broken):
    def forward(self, image, features):
        return self.good(_DoubledGradient.apply(image))


def _not_a_term(layers=None):
    return torch.nn.Identity()


BROKEN_LOSSES = [
    (NotScalar, "must return a scalar tensor, got shape (2,)"),
    (NaN, "returned a non-finite value (nan)"),
    (Detached, "is not differentiable (no grad_fn)"),
    (WrongDtype, "returned torch.float32 for a torch.float64 image"),
    (WrongDevice, "returned a tensor on meta, but the image is on cpu"),
    (ZeroGradient, "gradient with respect to the image is zero everywhere"),
    (InPlace, "modified the image in place"),
    (Stateful, "forward is not repeatable"),
    (UndeclaredLayer, "raised KeyError: 'relu2_1'"),
    (FailingPrepare, "prepare(targets) raised KeyError"),
    (WrongGradient, "gradcheck failed in float64"),
    (_not_a_term, "returned Identity, not an nstkit.losses.LossTerm"),
]


@pytest.mark.parametrize(("factory", "message"), BROKEN_LOSSES,
                         ids=[f.__name__ for f, _ in BROKEN_LOSSES])
def test_check_loss_fails_on_a_broken_loss(factory, message: str) -> None:
    with pytest.raises(AssertionError) as info:
        check_loss(factory, size=16)  # small: a failing gradcheck recomputes the full Jacobian
    assert message in str(info.value)
    assert str(info.value).startswith(factory.__qualname__)


def test_check_loss_reports_an_unknown_layer() -> None:
    with pytest.raises(AssertionError, match=r"bind\(resolve\) raised UnknownComponentError: "
                                             "unknown layer 'relu9_1'"):
        check_loss(losses.GramLoss, layers=["relu9_1"])


def test_check_loss_gradcheck_can_be_skipped_for_non_smooth_terms() -> None:
    check_loss(WrongGradient, gradcheck=False)


# --- check_optimizer ---------------------------------------------------------------------------


@pytest.mark.parametrize("factory", [optim.lbfgs, optim.adam, optim.sgd],
                         ids=["lbfgs", "adam", "sgd"])
def test_check_optimizer_passes_on_the_builtins(factory) -> None:
    check_optimizer(factory)


def test_check_optimizer_passes_with_options() -> None:
    check_optimizer(optim.lbfgs, options={"line_search": None})
    check_optimizer(optim.sgd, options={"lr": 0.5, "momentum": 0.5})


class _Base:
    def __init__(self, params, lr: float = 1.0) -> None:
        self.params, self.lr = list(params), lr

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def step(self, closure):
        loss = closure()
        with torch.no_grad():
            for p in self.params:
                p -= self.lr * p.grad
        return loss


class NoClosure(_Base):
    def step(self, closure):
        return torch.tensor(0.0)


class Ascent(_Base):
    def __init__(self, params) -> None:
        super().__init__(params, lr=-0.2)


class Frozen(_Base):
    def step(self, closure):
        return closure()


class ReturnsNone(_Base):
    def step(self, closure):
        super().step(closure)


class ChangesDtype(_Base):
    def step(self, closure):
        loss = super().step(closure)
        for p in self.params:
            p.data = p.data.to(torch.float16)
        return loss


class NoSetToNone(_Base):
    def zero_grad(self) -> None:  # type: ignore[override]
        super().zero_grad()


class NaNImage(_Base):
    def step(self, closure):
        loss = super().step(closure)
        with torch.no_grad():
            for p in self.params:
                p[0, 0, 0, 0] = float("nan")
        return loss


def no_step(params):
    return types.SimpleNamespace(zero_grad=lambda set_to_none=True: None)


BROKEN_OPTIMIZERS = [
    (NoClosure, "did not call the closure"),
    (Ascent, "expected at most 0.5 times"),
    (Frozen, "expected at most 0.5 times"),
    (ReturnsNone, "step 1 returned None"),
    (ChangesDtype, "the image changed from torch.float32 (1, 3, 8, 8) on cpu to torch.float16"),
    (NoSetToNone, "unexpected keyword argument 'set_to_none'"),
    (NaNImage, "the image holds non-finite values"),
    (no_step, "which has no step() method"),
]


@pytest.mark.parametrize(("factory", "message"), BROKEN_OPTIMIZERS,
                         ids=[f.__name__ for f, _ in BROKEN_OPTIMIZERS])
def test_check_optimizer_fails_on_a_broken_optimizer(factory, message: str) -> None:
    with pytest.raises(AssertionError) as info:
        check_optimizer(factory)
    assert message in str(info.value)
    assert str(info.value).startswith(factory.__qualname__)
