"""Benchmark: a network trained with the ``fast`` recipe's losses against the ``fast`` recipe
optimising each image, on photos the network did not see.

    nice -n 19 python plugins/nstkit-fast/bench/fast.py --work /tmp/nstkit-fast-bench \
        --grid plugins/nstkit-fast/docs/grid.png

1. train (``nstkit_fast.training.train``) at 128 px crops of photos resized to 256 px, for
   ``--steps`` steps (resumed if the work folder holds a checkpoint of the same training);
2. stylise the held-out photos with the network and with the optimised ``fast`` recipe (the
   same recipe, the same ``--strength``) at 256 px;
3. judge every output with ``nstkit.judge.Judge`` (VGG19, 256 px) against its content and the
   style, and the content image itself as the zero-style baseline;
4. time ``apply`` (the network, batch 1) against the optimised recipe at 256 and 512 px;
5. write a grid (content | network | optimised) and print the tables as Markdown.

Training photos: the few there are here (``--images``, default ``/work/shared/images``):
chelsea and coffee (photos) and three paintings used as extra content (composition_vii,
shipwreck, the_scream); held out: astronaut and tubingen. Style: great_wave.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from nstkit_fast.inference import stylise
from nstkit_fast.modelfile import load_model
from nstkit_fast.network import NetworkSettings
from nstkit_fast.training import TrainSettings, train

from nstkit.components import build_extractor, resolve_device
from nstkit.image import load_image, resize_longest, save_image
from nstkit.judge import Judge
from nstkit.plugins import get_host
from nstkit.recipe import load_recipe
from nstkit.stylisation import stylize

TRAIN = ["content/chelsea.jpg", "content/coffee.jpg", "style/composition_vii.jpg",
         "style/shipwreck.jpg", "style/the_scream.jpg"]
HELD_OUT = ["content/astronaut.jpg", "content/tubingen.jpg"]
STYLE = "style/great_wave.jpg"
METRICS = ("content", "ssim", "style", "w2", "sliced", "palette")


def _train(args: argparse.Namespace, recipe, model: Path) -> dict:
    settings = TrainSettings(steps=args.steps, batch_size=args.batch_size, crop=args.crop,
                             size=args.train_size, lr=args.lr, seed=0,
                             network=NetworkSettings(args.width, args.blocks),
                             checkpoint_every=50, device=args.device)
    last = [time.perf_counter()]

    def report(step) -> None:
        if step.step % 25 == 0 or step.step == step.steps:
            now = time.perf_counter()
            print(f"  step {step.step}/{step.steps}: total {step.losses['total']:.4g} "
                  f"({step.images_per_second:.2f} img/s, {now - last[0]:.0f} s since last)",
                  flush=True)
            last[0] = now

    photos = [args.images / p for p in TRAIN]
    result = train(recipe, args.images / STYLE, photos, model, settings, report=report)
    return {"steps": result.steps, "seconds_this_run": result.seconds}


def _timed(fn, repeat: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=Path, default=Path("/work/shared/images"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/nstkit-fast-bench"))
    parser.add_argument("--grid", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--train-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--strength", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--train-only", action="store_true")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    recipe = load_recipe("fast", [f"strength={args.strength}"])
    model_path = args.work / "great_wave.safetensors"
    print(f"training ({args.steps} steps, batch {args.batch_size}, {args.crop} px crops of "
          f"photos at {args.train_size} px, width {args.width}, {args.blocks} blocks)",
          flush=True)
    trained = _train(args, recipe, model_path)
    if args.train_only:
        return
    model = load_model(model_path)
    device = resolve_device(args.device)
    net = model.net.to(device)
    style = args.images / STYLE
    vgg = build_extractor(get_host(), "vgg19", device, pooling="max", weights="original")
    judge = Judge(vgg, size=args.size, device=device)
    rows, grid, optimised_seconds = [], [], {}
    for name in HELD_OUT:
        content = resize_longest(load_image(args.images / name), args.size)
        fast_out = stylise(net, content.to(device)).cpu()
        start = time.perf_counter()
        optimised = stylize(content, style, recipe.config, device=device, size=args.size).image
        opt_seconds = time.perf_counter() - start
        optimised_seconds[name] = opt_seconds
        grid.append(torch.cat([content, fast_out, optimised], dim=-1))
        for label, image in (("content image", content), ("network", fast_out),
                             ("optimised fast", optimised)):
            scores = judge(image, content, style).as_dict()
            rows.append({"photo": Path(name).stem, "output": label,
                         **{m: scores[m] for m in METRICS},
                         "seconds": opt_seconds if label == "optimised fast" else None})
            print(json.dumps(rows[-1]), flush=True)
    speed = []
    for size in (256, 512):
        content = resize_longest(load_image(args.images / HELD_OUT[1]), size).to(device)
        per_image = _timed(lambda content=content: stylise(net, content), 5)
        if size == args.size:  # timed above, on the same photo
            optimised = optimised_seconds[HELD_OUT[1]]
        else:
            start = time.perf_counter()
            stylize(content.cpu(), style, recipe.config, device=device, size=size)
            optimised = time.perf_counter() - start
        speed.append({"size": size, "network_s": per_image, "optimised_s": optimised,
                      "network_per_min": 60 / per_image, "optimised_per_min": 60 / optimised,
                      "speed-up": optimised / per_image})
        print(json.dumps(speed[-1]), flush=True)
    if args.grid is not None:
        width = max(g.shape[-1] for g in grid)
        rows_of_grid = [torch.nn.functional.pad(g, (0, width - g.shape[-1], 0, 4), value=1.0)
                        for g in grid]
        args.grid.parent.mkdir(parents=True, exist_ok=True)
        save_image(torch.cat(rows_of_grid, dim=-2)[0], args.grid)
    print(json.dumps({"trained": trained, "training": model.training}, indent=1))
    print("\n| photo | output | " + " | ".join(METRICS) + " | seconds |")
    print("|---|---|" + "---|" * (len(METRICS) + 1))
    for row in rows:
        print(f"| {row['photo']} | {row['output']} | "
              + " | ".join(f"{row[m]:.3f}" for m in METRICS)
              + " | " + ("" if row["seconds"] is None else f"{row['seconds']:.1f}") + " |")
    print("\n| size | network s/image | optimised s/image | network images/min | "
          "optimised images/min | speed-up |")
    print("|---|---|---|---|---|---|")
    for s in speed:
        print(f"| {s['size']} px | {s['network_s']:.3f} | {s['optimised_s']:.1f} | "
              f"{s['network_per_min']:.0f} | {s['optimised_per_min']:.2f} | "
              f"{s['speed-up']:.0f}x |")


if __name__ == "__main__":
    main()
