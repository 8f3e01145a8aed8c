"""Training photos: random crops of a folder of photos, the same crops for the same step.

Each step's batch is a function of the seed and the step alone (which photos, where the crops
are, which are flipped), so a resumed training sees exactly the batches an uninterrupted one
would, without saving any loader state. The next batch is read in a background thread while
the current step runs.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path

import torch

from nstkit.errors import NstkitError
from nstkit.image import load_image, resize_longest, resize_to


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator of step ``step``'s batch of a training seeded with ``seed``."""
    digest = hashlib.blake2b(f"nstkit-fast/{seed}/{step}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


class Photos:
    """Random ``crop`` x ``crop`` crops of photos resized so their longest side is ``size``
    (their shorter side at least ``crop``).

    Args:
        paths: the photo files; those that cannot be read are skipped (see :attr:`bad`).
        size: longest side the photos are resized to before cropping, in pixels.
        crop: side of the square crops.
        cache: how many resized photos to keep in memory.
    """

    def __init__(self, paths: Sequence[Path], size: int, crop: int, cache: int = 512) -> None:
        if not paths:
            raise NstkitError("no training photos")
        self.paths, self.size, self.crop = list(paths), int(size), int(crop)
        self.bad: dict[Path, str] = {}
        self._cache: OrderedDict[Path, torch.Tensor] = OrderedDict()
        self._cache_size = cache
        self._pool: ThreadPoolExecutor | None = None
        self._next: tuple[tuple[int, int, int], Future[torch.Tensor]] | None = None

    def digest(self) -> str:
        """A digest of the photos' names (not their bytes: a folder may hold 80 000)."""
        text = "\n".join(sorted(p.name for p in self.paths))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def photo(self, path: Path) -> torch.Tensor | None:
        """The resized photo ``(3, H, W)``, or ``None`` if it cannot be read."""
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        if path in self.bad:
            return None
        try:
            image = resize_longest(load_image(path), self.size)
        except Exception as exc:
            self.bad[path] = f"{type(exc).__name__}: {exc}"
            return None
        h, w = image.shape[-2:]
        if min(h, w) < self.crop:
            scale = self.crop / min(h, w)
            image = resize_to(image, (max(self.crop, round(h * scale)),
                                      max(self.crop, round(w * scale))))
        self._cache[path] = image[0]
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return image[0]

    def batch(self, seed: int, step: int, count: int) -> torch.Tensor:
        """Step ``step``'s batch: ``(count, 3, crop, crop)``, RGB in ``[0, 1]``, on the CPU.

        Raises:
            NstkitError: none of the photos can be read.
        """
        generator = step_generator(seed, step)
        crops = []
        while len(crops) < count:
            if len(self.bad) == len(self.paths):
                raise NstkitError(f"none of the {len(self.paths)} training photos can be read "
                                  f"(first: {next(iter(self.bad.values()))})")
            index = int(torch.randint(len(self.paths), (1,), generator=generator))
            top_draw, left_draw, flip = torch.rand(3, generator=generator).tolist()
            image = self.photo(self.paths[index])
            if image is None:
                continue
            h, w = image.shape[-2:]
            top = int(top_draw * (h - self.crop + 1))
            left = int(left_draw * (w - self.crop + 1))
            crop = image[:, top:top + self.crop, left:left + self.crop]
            crops.append(crop.flip(-1) if flip < 0.5 else crop)
        return torch.stack(crops).contiguous()

    def prefetched(self, seed: int, step: int, count: int) -> torch.Tensor:
        """:meth:`batch`, with the following step's batch started in a background thread."""
        key = (seed, step, count)
        if self._next is not None and self._next[0] == key:
            result = self._next[1].result()
        else:
            if self._next is not None:  # another batch is being read: the cache is not shared
                wait([self._next[1]])
            result = self.batch(seed, step, count)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nstkit-fast")
        following = (seed, step + 1, count)
        self._next = (following, self._pool.submit(self.batch, *following))
        return result

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool, self._next = None, None
