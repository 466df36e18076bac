"""One writing `mesh` run per mesh at a time.

The lock is an advisory ``flock`` on ``<mesh root>/.mesh.lock``: the kernel releases it when its
holder exits, however it exits (``kill -9`` included), so a dead holder never blocks the next run.
The file records the holder (PID, command, start time) for the "busy" message and is removed when
the run ends (a file left by a killed run is taken over). Worker processes inherit the lock: while
one of them runs, the mesh stays busy.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from mesh_tools.core.errors import BusyError, display_path

LOCK_FILE = ".mesh.lock"
_held: dict[Path, int] = {}  # mesh root -> descriptor, in this process (the lock is re-entrant)


@contextlib.contextmanager
def mesh_lock(root: Path, command: str) -> Iterator[None]:
    """Hold the mesh's lock for the ``with`` block, or raise BusyError naming the holder."""
    root = root.resolve()
    if root in _held:
        yield
        return
    path = root / LOCK_FILE
    fd = _acquire(path, command)
    if fd is None:
        yield  # a mesh root we may not write to: nothing of ours is written there either
        return
    _held[root] = fd
    try:
        yield
    finally:
        del _held[root]
        with contextlib.suppress(OSError):
            os.unlink(path)  # still holding it: a run that opened the old file sees it is gone
        os.close(fd)


def _acquire(path: Path, command: str) -> int | None:
    """The locked descriptor of ``path``; the file exists only while a run holds it."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BusyError(_busy_message(path, command)) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # its holder removed it between our open and our lock: take the new one
            os.close(fd)
            continue
        holder = {"pid": os.getpid(), "command": command, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        return fd


def _busy_message(path: Path, command: str) -> str:
    try:
        holder = json.loads(path.read_text(encoding="utf-8") or "{}")
        who = f"`{holder['command']}` (pid {holder['pid']}, since {holder['started']})"
    except (OSError, ValueError, KeyError, TypeError):
        who = "another `mesh` run"
    return (
        f"{display_path(path)}: the mesh is busy: {who} is running on it. `{command}` did nothing; "
        "run it again when that one has finished."
    )
