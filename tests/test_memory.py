"""The memory estimate, part by part, against what autograd, the optimisers and the allocator
really hold; how it reads; the memory available."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
import torch
from torch import nn

from nstkit.extractors.vgg import VGGExtractor
from nstkit.losses.gram import gram_matrix
from nstkit.memory import (
    CPU_HEAP_SHARE,
    CPU_RUNTIME,
    available_memory,
    estimate_memory,
    format_bytes,
    meta_copy,
    optimizer_state_images,
)
from nstkit.optim import adam, lbfgs, sgd
from nstkit.testing import TinyExtractor

LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]
MIB = 2 ** 20


@pytest.fixture(scope="module")
def vgg() -> VGGExtractor:
    return VGGExtractor("vgg19", weights="random")


def saved_bytes(extractor: nn.Module, height: int, width: int, precision: str) -> int:
    """Bytes autograd saves for the backward of Gram losses on every layer, counted by storage,
    the weights and buffers (not their bf16 copies) and the image left out; run for real on
    the CPU."""
    image = torch.rand(1, 3, height, width, requires_grad=True)
    left_out = {t.untyped_storage().data_ptr()
                for t in (*extractor.parameters(), *extractor.buffers(), image)}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in left_out:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    run = extractor.truncated(LAYERS) if hasattr(extractor, "truncated") else extractor
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            features = run(image, LAYERS)
        sum(gram_matrix(f.float()).sum() for f in features.values()).backward()
    return sum(saved.values())


def vgg_saved(height: int, width: int, value_bytes: int) -> int:
    """What VGG19 up to relu5_1 keeps, written out: the normalised input, every ReLU output,
    every max-pool output and its int64 indices; not the conv outputs (freed after the ReLU)."""
    total, channels, h, w = 3 * height * width * value_bytes, 64, height, width
    for block, convs in enumerate([2, 2, 4, 4, 1]):
        channels = min(64 * 2 ** block, 512)
        total += convs * channels * h * w * value_bytes
        if block < 4:
            h, w = h // 2, w // 2
            total += channels * h * w * (value_bytes + 8)
    return total


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_activations_are_what_autograd_saves(vgg, precision) -> None:
    measured = saved_bytes(vgg, 48, 64, precision)
    estimate = estimate_memory(vgg, LAYERS, 48, 64, precision=precision).activations
    assert estimate == measured
    if precision == "fp32":
        assert estimate == vgg_saved(48, 64, 4)
    else:  # bf16 maps, float32 copies of the features the losses keep, bf16 conv weights
        features = sum(v.numel() * 4 for v in vgg.truncated(LAYERS)(
            torch.zeros(1, 3, 48, 64), LAYERS).values())
        weights = sum(p.numel() * 2 for p in vgg.truncated(LAYERS).parameters() if p.dim() > 1)
        assert estimate == vgg_saved(48, 64, 2) + features + weights


def test_the_trace_follows_the_extractor() -> None:
    """Softplus keeps its input (the conv output), average pooling keeps nothing: the trace
    sees it without knowing the modules."""
    tiny = TinyExtractor(width=8)
    measured = saved_bytes(tiny, 32, 48, "fp32")
    assert estimate_memory(tiny, LAYERS, 32, 48).activations == measured


@pytest.mark.slow  # torch.profiler starts in seconds
def test_activations_and_backward_are_the_peak_of_a_forward_and_backward() -> None:
    from torch.profiler import ProfilerActivity, profile

    tiny = TinyExtractor(width=16)  # small weights: no oneDNN weight copies in the peak
    image = torch.rand(1, 3, 96, 128, requires_grad=True)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        features = tiny(image, LAYERS)
        sum(gram_matrix(f).sum() for f in features.values()).backward()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    estimate = estimate_memory(tiny, LAYERS, 96, 128, styles=0)
    assert peak == pytest.approx(estimate.activations + estimate.backward, rel=0.05)


def image_sized_alive(numel: int) -> int:
    """Distinct storages of ``numel`` elements that Python holds (the optimiser's vectors)."""
    return len({o.untyped_storage().data_ptr() for o in gc.get_objects()
                if type(o) in (torch.Tensor, nn.Parameter) and not o.is_meta
                and o.numel() == numel})


@pytest.mark.slow  # a scan of every Python object per evaluation
@pytest.mark.parametrize(("name", "make", "options", "steps"), [
    ("lbfgs", lambda p: lbfgs(p, lr=10.0, history_size=2), {"history_size": 2}, 5),
    ("lbfgs", lambda p: lbfgs(p, lr=10.0, history_size=2, line_search=None),
     {"history_size": 2, "line_search": None}, 5),
    ("adam", adam, {}, 3),
    ("sgd", sgd, {}, 3),
    ("sgd", lambda p: sgd(p, momentum=0.9), {"momentum": 0.9}, 3),
])
def test_optimizer_vectors_are_those_alive_during_an_evaluation(name, make, options,
                                                                steps) -> None:
    """Each evaluation starts with the image's gradient freed; the most image-sized vectors
    then alive is the estimate's count (at lr 10 the line search needs a few trials, so its
    trial gradients are counted too)."""
    torch.manual_seed(0)
    image = torch.rand(1, 3, 16, 17, requires_grad=True)
    target = torch.rand(3 * 16 * 17)  # alive too: one less
    optimizer = make([image])
    counts: list[int] = []

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        counts.append(image_sized_alive(target.numel()) - 1)
        x = image.view(-1)
        loss = ((x - target) ** 4).sum() + (x.sin() * target).sum() ** 2
        loss.backward()
        return loss.detach()

    for _ in range(steps):
        optimizer.step(closure)
    assert max(counts) == optimizer_state_images(name, options, iterations=steps)


def test_lbfgs_state_is_its_history_and_two_vectors() -> None:
    """torch's L-BFGS keeps ``d``, ``prev_flat_grad`` and ``k`` pairs (``old_dirs``,
    ``old_stps``), ``k`` growing by one per step from the second up to ``history_size``; the
    estimate's count adds the image and the line search's 7 vectors."""
    image = torch.rand(1, 3, 8, 8, requires_grad=True)
    optimizer = lbfgs([image], history_size=4)

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = ((image - 0.3) ** 4).sum() + image.sin().sum()
        loss.backward()
        return loss

    for step in range(1, 8):
        optimizer.step(closure)
        state = optimizer.state[image]
        vectors = [state["d"], state["prev_flat_grad"], *state["old_dirs"], *state["old_stps"]]
        pairs = min(4, step - 1)
        assert len(state["old_dirs"]) == len(state["old_stps"]) == pairs
        assert sum(v.numel() for v in vectors) == (2 * pairs + 2) * image.numel()
        kept = 1 + 2 + 2 * pairs  # the image, d, prev_flat_grad and the pairs
        assert optimizer_state_images("lbfgs", {"history_size": 4}, step) == kept + 7
    assert optimizer_state_images("lbfgs") == 2 * 100 + 10  # a long job fills the history
    assert optimizer_state_images("lbfgs", {"line_search": None}, iterations=2) == 3


def test_estimate_grows_with_pixels_batch_and_history(vgg) -> None:
    small = estimate_memory(vgg, LAYERS, 64, 64)
    large = estimate_memory(vgg, LAYERS, 128, 128)
    assert large.activations == 4 * small.activations
    assert large.backward == 4 * small.backward
    assert large.weights == small.weights == sum(p.numel() * 4 for p in vgg.parameters()) + 24
    batch = estimate_memory(vgg, LAYERS, 64, 64, batch=3)
    assert batch.activations == 3 * small.activations
    assert batch.total > small.total
    short = estimate_memory(vgg, LAYERS, 64, 64, optimizer_options={"history_size": 10})
    assert small.optimizer - short.optimizer == 2 * 90 * 3 * 64 * 64 * 4
    assert estimate_memory(vgg, LAYERS, 64, 64, iterations=11).optimizer == short.optimizer
    averaged = estimate_memory(vgg, LAYERS, 64, 64, average=True)  # ema: one more image
    assert averaged.optimizer - small.optimizer == 3 * 64 * 64 * 4


def test_targets_are_the_content_and_style_features_and_images(vgg) -> None:
    """Features of the content (1 x 48x64) and of a style (square at the longest side, or as
    given), float32, and the images: content once, each style before and after resizing."""
    run = vgg.truncated(LAYERS)

    def features(h: int, w: int) -> int:
        return sum(v.numel() * 4 for v in run(torch.zeros(1, 3, h, w), LAYERS).values())

    default = estimate_memory(vgg, LAYERS, 48, 64)
    assert default.targets == features(48, 64) + features(64, 64) + 3 * 4 * (48 * 64
                                                                              + 2 * 64 * 64)
    given = estimate_memory(vgg, LAYERS, 48, 64, styles=2, style_shape=(32, 64))
    assert given.targets == features(48, 64) + 2 * features(32, 64) + 3 * 4 * (
        48 * 64 + 4 * 32 * 64)
    assert estimate_memory(vgg, LAYERS, 48, 64, styles=0).targets == features(48, 64) + \
        3 * 4 * 48 * 64


def test_backward_is_the_feature_gradients_and_one_more(vgg) -> None:
    run = vgg.truncated(LAYERS)
    sizes = [v.numel() * 4 for v in run(torch.zeros(1, 3, 48, 64), LAYERS).values()]
    assert estimate_memory(vgg, LAYERS, 48, 64).backward == sum(sizes) + max(sizes)


def test_runtime_and_allocator_are_the_cpus(vgg) -> None:
    """Small images: every block is under glibc's mmap threshold, so the heap's share is of
    the activations, the backward and the targets; on CUDA neither part is counted."""
    cpu = estimate_memory(vgg, LAYERS, 64, 64)
    assert cpu.runtime == CPU_RUNTIME
    assert cpu.allocator == round(CPU_HEAP_SHARE * (cpu.activations + cpu.backward
                                                    + cpu.targets))
    cuda = estimate_memory(vgg, LAYERS, 64, 64, device="cuda")
    assert cuda.runtime == cuda.allocator == 0
    assert cuda.total == cpu.total - cpu.runtime - cpu.allocator
    # 1024 px: relu1_x maps (192 MiB), their gradients and features are mapped, not heap
    large = estimate_memory(vgg, LAYERS, 768, 1024)
    assert large.allocator < CPU_HEAP_SHARE * (large.activations + large.backward) / 4


def test_meta_copy_does_not_copy_the_weights(vgg, monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a weight was copied")

    monkeypatch.setattr(nn.Parameter, "__deepcopy__", refuse)
    probe = meta_copy(vgg)
    assert all(p.is_meta for p in probe.parameters())
    assert all(b.is_meta for b in probe.buffers())
    assert not any(p.is_meta for p in vgg.parameters())


def test_estimate_reads_well(vgg) -> None:
    estimate = estimate_memory(vgg, LAYERS, 384, 512, batch=2)
    text = str(estimate)
    assert text.startswith(format_bytes(estimate.total))
    assert "for 2 x 384x512 px (activations " in text
    assert f"runtime {format_bytes(CPU_RUNTIME)}, allocator " in text
    assert estimate.total == sum(getattr(estimate, part) for part in (
        "weights", "activations", "backward", "targets", "optimizer", "runtime", "allocator"))
    assert format_bytes(1.5 * 2**30) == "1.5 GiB"
    assert format_bytes(3 * 2**20) == "3 MiB"


def test_available_memory_on_the_cpu() -> None:
    import psutil

    available = available_memory("cpu")
    assert 0 < available <= psutil.virtual_memory().total
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():  # Linux: the kernel's own MemAvailable, read a moment apart
        kib = next(int(line.split()[1]) for line in meminfo.read_text().splitlines()
                   if line.startswith("MemAvailable:"))
        assert available == pytest.approx(kib * 1024, rel=0.1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_available_memory_on_cuda() -> None:
    free, total = torch.cuda.mem_get_info(0)
    assert 0 < available_memory("cuda:0") <= total
    assert available_memory(torch.device("cuda", 0)) == pytest.approx(free, rel=0.1)
