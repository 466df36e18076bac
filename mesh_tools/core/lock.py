"""Locks on what one writing `mesh` run writes: its domains, a DuckDB file they share, the health history, a docs site.

A writing command holds a lock on each thing it writes and nothing else, so teams never wait for each
other: `mesh build marketing` and `mesh publish sales` run side by side; two writers of one domain
take turns (the second waits up to ``--wait`` seconds, else is told who holds it). Reading commands
take no lock. Each lock is an advisory ``flock`` on ``<mesh root>/.mesh/locks/<name>.lock``:

- the kernel releases it when its holder exits, however it exits (``kill -9`` included);
- a forked child (a worker process) closes its copy at once, so a worker left behind by a killed run
  never keeps a lock; and a lock still held by a process its recorded holder left behind (that
  holder gone: the pid dead, or reused by another process) is taken over, with a note naming it;
- the file records the holder (pid, its start time, command, since when) for the "busy" message and
  is removed when the run ends; it is opened without following a symbolic link.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh_tools.core.errors import BusyError, display_path
from mesh_tools.core.files import open_nofollow, refuse_link
from mesh_tools.core.paths import safe_name

LOCK_DIR = Path(".mesh") / "locks"
POLL_SECONDS = 0.2

Note = Callable[[str], None]


@dataclass(frozen=True, order=True)
class Resource:
    """Something one writer at a time may write: ``key`` names its lock file, ``label`` it in messages."""

    key: str
    label: str


def domain(name: str) -> Resource:
    """A domain: its folder (stubs, target/, state) and its releases in the exchange."""
    return Resource(f"domain-{safe_name(name, 'domain', 'lock')}", f"domain {name}")


def storage(path: Path) -> Resource:
    """A database file (DuckDB: one writer per file), whichever domains open it."""
    resolved = path.resolve()
    return Resource(f"storage-{_digest(resolved)}", f"the database file {display_path(resolved)}")


def folder(kind: str, path: Path, label: str) -> Resource:
    """A mesh-wide output folder (the health history, a docs site), by where it is."""
    return Resource(f"{kind}-{_digest(path.resolve())}", f"{label} ({display_path(path)})")


CONFIG = Resource("mesh-yml", "the mesh's configuration (mesh.yml)")


def _digest(path: Path) -> str:
    return hashlib.sha256(str(path).encode("utf-8", "surrogateescape")).hexdigest()[:16]


_held: dict[Path, tuple[int, int]] = {}  # lock file -> (descriptor, holds in this process): re-entrant


def _forget_in_child() -> None:
    """In a forked child, close the parent's lock descriptors: the lock stays the parent's alone (the
    parent's own descriptor keeps it), and dies with the parent, never with a worker it left behind."""
    for fd, _count in _held.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_forget_in_child)


@contextlib.contextmanager
def hold(
    root: Path, resources: Iterable[Resource], command: str, *, wait: float = 0, note: Note | None = None
) -> Iterator[None]:
    """Hold the locks of ``resources`` for the ``with`` block: all of them, or BusyError naming a holder.

    Locks are taken in one order (no two runs can each wait for the other) and, for up to ``wait``
    seconds, waited for; on a busy one the ones already taken are released.
    """
    folder_path = root.resolve() / LOCK_DIR
    wanted = sorted(set(resources))
    for place in (folder_path.parent, folder_path):
        refuse_link(place)  # lock files are created only in the mesh's own folder
    try:
        folder_path.mkdir(parents=True, exist_ok=True)
    except OSError:
        wanted = []  # a mesh root we may not write to: nothing of ours is written there either
    deadline = time.monotonic() + max(wait, 0)
    taken: list[Path] = []
    try:
        for resource in wanted:
            path = folder_path / f"{resource.key}.lock"
            if path in _held:
                fd, count = _held[path]
                _held[path] = (fd, count + 1)
            else:
                fd = _acquire(path, resource, command, deadline, note or (lambda _: None))
                if fd is None:
                    continue
                _held[path] = (fd, 1)
            taken.append(path)
        yield
    finally:
        for path in reversed(taken):
            _release(path)


def _release(path: Path) -> None:
    if path not in _held:
        return  # a forked child leaving its parent's block: the lock was never its own
    fd, count = _held[path]
    if count > 1:
        _held[path] = (fd, count - 1)
        return
    del _held[path]
    with contextlib.suppress(OSError):
        if os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
            os.unlink(path)  # still holding it: a run that opened this file sees it is gone and opens anew
    os.close(fd)


def _acquire(path: Path, resource: Resource, command: str, deadline: float, note: Note) -> int | None:
    """The locked descriptor of ``path``; the file exists only while a run holds it."""
    while True:
        try:
            fd = open_nofollow(path, os.O_RDWR | os.O_CREAT)
        except PermissionError:
            return None  # a lock folder we may not write to: as a root we may not write to
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            if holder is not None and _gone(holder):
                left = _left_behind(fd)
                if _take_over(path, fd):
                    os.close(fd)
                    note(_takeover_note(path, resource, holder, left))
                    continue
            os.close(fd)
            if time.monotonic() >= deadline:
                raise BusyError(_busy_message(path, resource, holder, command)) from None
            time.sleep(min(POLL_SECONDS, max(deadline - time.monotonic(), 0.01)))
            continue
        try:
            same = os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # its holder removed it between our open and our lock: take the new one
            os.close(fd)
            continue
        record = {
            "pid": os.getpid(),
            "pid_start": _start_time(os.getpid()),
            "host": socket.gethostname(),
            "command": command,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        return fd


def _read_holder(fd: int) -> dict[str, Any] | None:
    """The holder's record, or None while it is being written (a holder between its lock and its record)."""
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"null")
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None


def _start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, from /proc), to tell it from a later process of that pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return int(handle.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _gone(holder: dict[str, Any]) -> bool:
    """Whether the recorded holder no longer runs (on this machine: another host's pid says nothing here)."""
    if holder.get("host") not in (None, socket.gethostname()):
        return False
    pid = int(holder["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    started = holder.get("pid_start")
    return started is not None and _start_time(pid) not in (None, started)  # the pid now names another process


def _take_over(path: Path, fd: int) -> bool:
    """Remove the lock file ``fd`` opened (a process left behind by its dead holder keeps it), so the next
    open creates a fresh one. One taker at a time (a lock on the folder); False if it changed meanwhile."""
    guard = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(guard, fcntl.LOCK_EX)
        try:
            if os.stat(path, follow_symlinks=False).st_ino != os.fstat(fd).st_ino:
                return False
            os.unlink(path)
            return True
        except FileNotFoundError:
            return False
    finally:
        os.close(guard)


def _left_behind(fd: int) -> list[str]:
    """The processes still holding the file ``fd`` opened (pid and command line), read from /proc."""
    stat = os.fstat(fd)
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                for link in os.scandir(f"/proc/{entry.name}/fd"):
                    target = os.stat(link.path)
                    if (target.st_dev, target.st_ino) == (stat.st_dev, stat.st_ino):
                        with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                            line = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
                        found.append(f"pid {entry.name}: {line[:120]}")
                        break
    return found


def _takeover_note(path: Path, resource: Resource, holder: dict[str, Any], left: list[str]) -> str:
    who = "; ".join(left) if left else "a process that has since ended"
    return (
        f"{display_path(path)}: {resource.label} was locked by `{holder.get('command')}` (pid {holder['pid']}), "
        f"which is gone; the lock was still held by what it left behind ({who}) and is now taken over. "
        "A process named here may still be running for the dead command: end it if it is."
    )


def _busy_message(path: Path, resource: Resource, holder: dict[str, Any] | None, command: str) -> str:
    if holder is not None and {"command", "pid", "started"} <= set(holder):
        who = f"`{holder['command']}` (pid {holder['pid']}, since {holder['started']})"
    else:
        who = "another `mesh` run"
    return (
        f"{display_path(path)}: {resource.label} is busy: {who} is writing it. `{command}` did nothing; run it "
        "again when that one has finished, or give --wait SECONDS to wait for it."
    )
