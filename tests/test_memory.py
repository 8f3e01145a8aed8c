"""The memory estimate against what autograd really keeps, and how the CLI reports it."""

from __future__ import annotations

import pytest
import torch

from nstkit.extractors.vgg import VGGExtractor
from nstkit.losses.gram import gram_matrix
from nstkit.memory import estimate_memory, format_bytes, optimizer_state_images

LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]


@pytest.fixture(scope="module")
def vgg() -> VGGExtractor:
    return VGGExtractor("vgg19", weights="random")


def saved_activation_bytes(extractor: VGGExtractor, height: int, width: int,
                           precision: str) -> int:
    """Bytes autograd saves for the backward pass of a Gram loss, counted by storage, with
    the weights (and their bf16 copies) left out."""
    weight_shapes = {tuple(p.shape) for p in extractor.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if tuple(tensor.shape) not in weight_shapes:
            storage = tensor.untyped_storage()
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    image = torch.rand(1, 3, height, width, requires_grad=True)
    run = extractor.truncated(LAYERS)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            features = run(image, LAYERS)
        sum(gram_matrix(f.float()).sum() for f in features.values()).backward()
    return sum(saved.values())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_activation_estimate_is_within_1x_to_2x_of_what_autograd_saves(vgg, precision) -> None:
    # every module output is counted, autograd keeps ReLU/pool outputs and pool indices but
    # frees conv outputs after their ReLU: measured 1.7x (fp32) and 1.0x (bf16)
    measured = saved_activation_bytes(vgg, 96, 128, precision)
    estimate = estimate_memory(vgg, LAYERS, 96, 128, precision=precision).activations
    assert measured <= estimate <= 2 * measured, (estimate, measured)


def test_estimate_grows_with_pixels_batch_and_history(vgg) -> None:
    small = estimate_memory(vgg, LAYERS, 64, 64)
    large = estimate_memory(vgg, LAYERS, 128, 128)
    assert large.activations == pytest.approx(4 * small.activations, rel=0.01)
    assert large.weights == small.weights > 40 * 2**20  # VGG19 up to relu5_1, float32
    batch = estimate_memory(vgg, LAYERS, 64, 64, batch=3)
    assert batch.activations == 3 * small.activations
    assert batch.total > small.total
    shallow = estimate_memory(vgg, ["relu1_1", "relu2_1"], 64, 64)
    assert shallow.weights < small.weights / 50  # truncated after relu2_1
    assert estimate_memory(vgg, LAYERS, 64, 64, optimizer="lbfgs",
                           optimizer_options={"history_size": 10}).optimizer < small.optimizer
    assert optimizer_state_images("lbfgs") == 204
    assert optimizer_state_images("adam") == 4


def test_estimate_reads_well(vgg) -> None:
    text = str(estimate_memory(vgg, LAYERS, 384, 512, batch=2))
    assert text.startswith(format_bytes(estimate_memory(vgg, LAYERS, 384, 512, batch=2).total))
    assert "for 2 x 384x512 px (activations " in text
    assert format_bytes(1.5 * 2**30) == "1.5 GiB"
    assert format_bytes(3 * 2**20) == "3 MiB"
