"""``manifest.jsonl``: one JSON record per finished or failed job, appended and fsynced.

Each shard of a job array writes its own file (``manifest.shard-I-of-N.jsonl``); readers merge
every ``manifest*.jsonl`` in the folder, the last record of an output winning.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MANIFEST = "manifest.jsonl"


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_name(shard: tuple[int, int] | None, stem: str = "manifest",
                  suffix: str = ".jsonl") -> str:
    """``manifest.jsonl``, or ``manifest.shard-I-of-N.jsonl`` for shard ``I`` of ``N``."""
    return f"{stem}{suffix}" if shard is None else f"{stem}.shard-{shard[0]}-of-{shard[1]}{suffix}"


def read_records(out_dir: Path) -> Iterator[dict[str, Any]]:
    """Every record in every manifest of ``out_dir``; a torn last line (a killed writer) is
    skipped."""
    for path in sorted(out_dir.glob("manifest*.jsonl")):
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict) and "output" in record:
                    yield record


def latest_records(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Output name -> its most recent record (by finish time)."""
    latest: dict[str, dict[str, Any]] = {}
    for record in read_records(out_dir):
        known = latest.get(record["output"])
        if known is None or record.get("finished", "") >= known.get("finished", ""):
            latest[record["output"]] = record
    return latest


class ManifestWriter:
    """Appends records to one manifest file, each flushed and fsynced before returning."""

    def __init__(self, out_dir: Path, shard: tuple[int, int] | None = None) -> None:
        self.path = out_dir / manifest_name(shard)
        if self.path.exists() and self.path.stat().st_size:
            with self.path.open("rb+") as handle:  # end a line torn by a killed writer
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    handle.write(b"\n")

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
