"""Claims on the jobs of an output folder, so that any number of ``nstkit run`` processes on
one folder (on one machine, or on several sharing it) never run a job at the same time.

A claim is the file ``OUT/.claims/<output>.<hash>.claim``, created with ``O_CREAT | O_EXCL``:
of several workers creating it at once exactly one succeeds. That holds on local file systems
and on NFSv3 and later with Linux clients (the server does the exclusive create); ``flock``
and ``fcntl`` locks are not: over NFS they depend on a lock daemon, and ``flock`` was local to
the client before Linux 2.6.12. The claim's JSON body, written once, names its holder:
``output``, ``host``, ``pid``, ``worker`` (an id per process run), ``started`` and
``machine`` (host name, boot id and pid namespace: where ``pid`` means this process).

While the job runs, a daemon thread renews the claim every ``STALE_AFTER / RENEWALS`` seconds
by setting its **mtime** (through the claim's own open descriptor, so a claim that another
worker took over is never renewed by mistake); the mtime is what expiry compares. Releasing
removes the claim if it is still this worker's. A claim is **stale** when its holder is known
to be gone (same machine, pid dead or a zombie) or it has not been renewed for ``STALE_AFTER``
seconds (another machine, a hung worker, a reused pid), so the clocks of the machines must
agree to well within ``STALE_AFTER`` (NTP).

Taking over a stale claim: ``os.link`` it to a marker named after the claim as judged (inode
and mtime). ``link`` fails if the marker exists, so one worker breaks a given claim; it checks
that the marker is that claim (not a fresh one that replaced it meanwhile), removes claim and
marker, then claims with ``O_EXCL`` like anyone. A breaker killed between the two steps leaves
its marker, removed by the others once it is ``STALE_AFTER`` old.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

CLAIMS = ".claims"  # the folder of claims, inside the output folder
STALE_AFTER = 120.0  # seconds without renewal after which any claim may be taken over
RENEWALS = 8  # renewals per STALE_AFTER: a live holder renews every 15 s

_UNSAFE = re.compile(r"[^\w.+-]+")


def claim_name(output: str) -> str:
    """The claim's file name for the job writing ``output``: the name made safe (it never
    leaves the folder) and a hash of the whole name (no two outputs share a claim)."""
    digest = hashlib.sha256(output.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return f"{_UNSAFE.sub('_', output)[:100]}.{digest}.claim"


@functools.cache
def machine() -> str:
    """Where a pid means the same process: host name, boot id and pid namespace (Linux)."""
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    with contextlib.suppress(OSError):
        parts.append(os.readlink("/proc/self/ns/pid"))
    return " ".join(parts)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine is running (a zombie is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


@dataclass(frozen=True)
class Claim:
    """A claim file as read: who holds the job, since when, when it was last renewed."""

    path: Path
    output: str
    host: str
    pid: int | None
    worker: str
    started: float | None  # seconds since the epoch, from the holder's clock
    machine: str
    renewed: float  # the file's mtime
    identity: tuple[int, int, int]  # device, inode, mtime in ns: this claim as judged

    def stale(self, now: float | None = None) -> str:
        """Why the claim may be taken over, or ``""`` while its holder may still run the job."""
        if self.pid is not None and self.machine == machine() and not pid_alive(self.pid):
            return f"pid {self.pid} is gone"
        idle = (time.time() if now is None else now) - self.renewed
        return f"not renewed for {idle:.0f} s" if idle > STALE_AFTER else ""


def read_claim(path: Path) -> Claim | None:
    """The claim at ``path``, or ``None`` if there is none (a body not yet written or torn
    reads as a claim of an unknown holder, judged by its mtime alone)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        info = os.fstat(fd)  # NFS: opening revalidates, so this mtime is the server's
        data = os.read(fd, 1 << 16)
    finally:
        os.close(fd)
    try:
        body = json.loads(data)
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    pid, started = body.get("pid"), body.get("started")
    return Claim(path, str(body.get("output", "")), str(body.get("host", "?")),
                 pid if isinstance(pid, int) and pid > 0 else None, str(body.get("worker", "")),
                 _seconds(started), str(body.get("machine", "")), info.st_mtime,
                 (info.st_dev, info.st_ino, info.st_mtime_ns))


def _seconds(stamp: object) -> float | None:
    try:
        return datetime.fromisoformat(str(stamp)).timestamp()
    except ValueError:
        return None


def read_claims(out: Path, outputs: Iterable[str]) -> dict[str, Claim]:
    """Output -> its claim, for those of ``outputs`` that have one in ``out``."""
    try:
        present = {entry.name for entry in os.scandir(out / CLAIMS)}
    except OSError:
        return {}
    found = {}
    for output in outputs:
        name = claim_name(output)
        claim = read_claim(out / CLAIMS / name) if name in present else None
        if claim is not None:
            found[output] = claim
    return found


def _break(claim: Claim) -> bool:
    """Remove the stale ``claim`` unless another worker is removing it or it changed since
    it was judged; True when the caller should try to claim again."""
    marker = claim.path.with_name(f"{claim.path.name}.{claim.identity[1]}-"
                                  f"{claim.identity[2]}.break")
    try:
        os.link(claim.path, marker)
    except FileNotFoundError:
        return True  # released or broken meanwhile
    except FileExistsError:
        _clear_abandoned(marker)
        return False
    except OSError:  # no hard links here: check, then remove (two breakers may both win)
        if _identity(claim.path) == claim.identity:
            claim.path.unlink(missing_ok=True)
        return True
    try:
        if _identity(marker) != claim.identity:
            return False  # a fresh claim took its place: leave it
        claim.path.unlink(missing_ok=True)
        return True
    finally:
        marker.unlink(missing_ok=True)


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino, info.st_mtime_ns


def _clear_abandoned(marker: Path) -> None:
    """Remove the marker of a breaker that died breaking (linking set its ctime)."""
    with contextlib.suppress(OSError):
        if time.time() - os.stat(marker).st_ctime > STALE_AFTER:
            marker.unlink()


@dataclass
class _Held:
    fd: int
    path: Path
    inode: tuple[int, int]


class Leases:
    """The claims this process holds on the jobs of the output folder ``out``.

    Leaving its ``with`` block (normal end, an exception, Ctrl-C) releases every claim still
    held; a process killed with -9 leaves them to be taken over.
    """

    def __init__(self, out: Path) -> None:
        self.folder = out / CLAIMS
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.held: dict[str, _Held] = {}
        self.lost: set[str] = set()  # claims found taken over while held
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Leases:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def claim(self, output: str) -> bool:
        """Claim the job writing ``output``: True when this worker holds it (new or not),
        False while another worker does."""
        if output in self.held:
            return True
        path = self.folder / claim_name(output)
        for _ in range(3):  # the claim vanished or was broken: try again, a few times
            try:
                fd = self._create(path, output)
            except FileExistsError:
                found = read_claim(path)
                if found is not None and (not found.stale() or not _break(found)):
                    return False
                continue
            info = os.fstat(fd)
            with self._lock:
                self.held[output] = _Held(fd, path, (info.st_dev, info.st_ino))
            self._start_renewing()
            return True
        return False

    def _create(self, path: Path, output: str) -> int:
        """Create the claim file (``O_EXCL``) with its body; raises FileExistsError."""
        body = json.dumps({"output": output, "host": socket.gethostname(), "pid": os.getpid(),
                           "worker": self.worker, "machine": machine(),
                           "started": datetime.now(timezone.utc).isoformat()}).encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileNotFoundError:  # no folder yet, or another worker just removed it
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, body)
            os.fsync(fd)  # NFS: other machines read the body while the file stays open
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        return fd

    def release(self, output: str) -> None:
        """Give up the claim on ``output`` (removed if it is still this worker's)."""
        with self._lock:
            held = self.held.pop(output, None)
        if held is None:
            return
        try:
            if self._owns(held):
                held.path.unlink(missing_ok=True)
        finally:
            os.close(held.fd)

    def renew(self) -> None:
        """Set the mtime of every claim held to now; note those found taken over."""
        with self._lock:
            for output, held in self.held.items():
                with contextlib.suppress(OSError):
                    if os.utime in os.supports_fd:
                        os.utime(held.fd)
                    elif self._owns(held):
                        os.utime(held.path)
                if not self._owns(held):
                    self.lost.add(output)

    def close(self) -> None:
        """Stop renewing, release every claim, remove the claims folder if it is empty."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for output in list(self.held):
            self.release(output)
        with contextlib.suppress(OSError):
            self.folder.rmdir()

    @staticmethod
    def _owns(held: _Held) -> bool:
        try:
            info = os.stat(held.path)
        except FileNotFoundError:
            return False
        return (info.st_dev, info.st_ino) == held.inode

    def _start_renewing(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._renewing, name="nstkit-leases",
                                            daemon=True)
            self._thread.start()

    def _renewing(self) -> None:
        while not self._stop.wait(STALE_AFTER / RENEWALS):
            self.renew()
