"""Locks on what one writing `mesh` run writes: its domains, a DuckDB file they share, the health history, a docs site.

A writing command holds a lock on each thing it writes and nothing else, so teams never wait for each
other: `mesh build marketing` and `mesh publish sales` run side by side; two writers of one domain
take turns (the second waits up to ``--wait`` seconds, else is told who holds it). Reading commands
take no lock. Each lock is an advisory ``flock`` on ``<mesh root>/.mesh/locks/<name>.lock``:

- the kernel releases it when its holder exits, however it exits (``kill -9`` included), and the
  kernel's lock is the truth: a lock is busy while any process holds it;
- a forked child (a worker process) closes its copy at once, so a worker left behind by a killed run
  never keeps a lock. A lock still held by a process its recorded holder left behind is taken over,
  with a note naming it, only when that is proven: the holder recorded in the file ran in this very PID
  namespace (and on this host) and is gone (its pid dead, or reused by a later process); the kernel says
  the process that took the lock is that holder or no longer exists; and every process still holding it
  is in this PID namespace, was started after the holder, and shares its session (a process it forked).
  Anything else (a holder in another PID namespace or container, which has its own pid 1; a record
  being written; a process /proc does not show) is busy, naming what holds the lock;
- the file records the holder (pid, its start time, PID namespace, session, command, since when) for the
  "busy" message and is removed when the run ends; it is opened without following a symbolic link, in a
  folder reached from the mesh root without following one either;
- a writing command that cannot take its lock (a lock folder it may not create or write: a read-only
  mesh root, permissions, an immutable folder) stops before it writes anything: StorageError (exit 3)
  naming the folder and the fix. It never runs unlocked.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh_tools.core.errors import BusyError, StorageError, display_path
from mesh_tools.core.files import ensure_folder, open_nofollow
from mesh_tools.core.jsonfile import loads
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
    wanted = sorted(set(resources))
    if not wanted:  # nothing to lock (a reading command): nothing is written, not even the lock folder
        yield
        return
    root = root.resolve()
    folder_path = root / LOCK_DIR
    try:  # lock files are created only in the mesh's own folder, reached from the root through no link
        ensure_folder(folder_path, root)
    except OSError as exc:
        raise _unlockable(folder_path, command, exc) from None
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


def _unlockable(folder: Path, command: str, exc: OSError) -> StorageError:
    """The error of a writing command that cannot take its lock: it must not run unlocked."""
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    where = display_path(Path(exc.filename)) if exc.filename else display_path(folder)
    return StorageError(
        f"{display_path(folder)}: the lock folder cannot be written ({where}: {reason}), so `{command}` cannot take "
        "its lock and did nothing (two writers of one domain must never run at once). Make the folder writable "
        "(its permissions and owner; `chattr -i` if it is immutable; a mesh root on a read-only mount must be "
        "remounted read-write, or the command run in a writable copy), then run again."
    )


def _acquire(path: Path, resource: Resource, command: str, deadline: float, note: Note) -> int:
    """The locked descriptor of ``path``; the file exists only while a run holds it."""
    while True:
        try:  # O_NONBLOCK: a FIFO or device planted at the name never blocks the open
            fd = open_nofollow(path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK)
        except OSError as exc:
            raise _unlockable(path.parent, command, exc) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise StorageError(
                f"{display_path(path)}: is not a plain file (a FIFO, socket or device was put there); the mesh "
                f"keeps its locks in plain files, so `{command}` did nothing. Remove it (`rm {display_path(path)}`) "
                "and run again."
            )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            found = _Holders.of(fd, holder)
            if found.stray:
                if _take_over(path, fd):
                    os.close(fd)
                    note(_takeover_note(path, resource, holder or {}, found.described))
                    continue
            os.close(fd)
            if time.monotonic() >= deadline:
                raise BusyError(_busy_message(path, resource, holder, command, found)) from None
            time.sleep(min(POLL_SECONDS, max(deadline - time.monotonic(), 0.01)))
            continue
        except OSError as exc:
            os.close(fd)
            raise _unlockable(path.parent, command, exc) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # its holder removed it between our open and our lock: take the new one
            os.close(fd)
            continue
        record = {
            "pid": os.getpid(),
            "pid_start": _start_time("self"),
            "pid_ns": _pid_namespace("self"),
            "sid": os.getsid(0),
            "host": socket.gethostname(),
            "command": command,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode(), 0)
        except OSError as exc:
            os.close(fd)
            raise _unlockable(path.parent, command, exc) from None
        return fd


def _read_holder(fd: int) -> dict[str, Any] | None:
    """The holder's record, or None while it is being written (a holder between its lock and its record)."""
    try:
        data = loads(os.pread(fd, 4096, 0) or b"null")
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None


def _start_time(pid: int | str) -> int | None:
    """When ``pid`` started (clock ticks since boot, from /proc), to tell it from a later process of that pid."""
    return _stat_field(pid, 19)


def _stat_field(pid: int | str, index: int) -> int | None:
    """A number of /proc/<pid>/stat, counted from the state (0), the field after the command (3: session)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return int(handle.read().rsplit(b")", 1)[1].split()[index])
    except (OSError, ValueError, IndexError):
        return None


def _pid_namespace(pid: int | str) -> str | None:
    """The PID namespace ``pid`` runs in (``pid:[4026531836]``), or None when /proc does not tell."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
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


@dataclass(frozen=True)
class _Holder:
    """A process that holds the lock (its descriptor shares the locked open file), as /proc shows it."""

    pid: int
    command: str
    placer: int | None  # the pid the kernel records as the one that took the lock (0: gone or not visible)
    namespace: str | None
    start: int | None
    session: int | None

    def describe(self, here: str | None) -> str:
        where = "" if self.namespace is not None and self.namespace == here else ", in another PID namespace"
        return f"pid {self.pid}: {self.command[:120]}{where}"


@dataclass(frozen=True)
class _Holders:
    """Who holds a busy lock, and whether every one of them is provably a stray of its dead recorded holder."""

    holders: tuple[_Holder, ...] = ()
    here: str | None = None  # this process's PID namespace
    stray: bool = False

    @property
    def described(self) -> list[str]:
        return [h.describe(self.here) for h in self.holders]

    @classmethod
    def of(cls, fd: int, holder: dict[str, Any] | None) -> _Holders:
        """Only when the recorded holder is gone are the lock's holders looked for (a scan of /proc)."""
        if holder is None or not _gone(holder):
            return cls()
        here = _pid_namespace("self") if _own_proc() else None
        holders = tuple(_lock_holders(fd))
        return cls(holders, here, _provably_stray(holder, holders, here))


def _own_proc() -> bool:
    """Whether /proc shows this process's PID namespace (inside ``unshare -p`` without a new /proc, it does not)."""
    try:
        return os.readlink("/proc/self") == str(os.getpid())
    except OSError:
        return False


def _provably_stray(holder: dict[str, Any], holders: tuple[_Holder, ...], here: str | None) -> bool:
    """Whether the lock may be taken over from ``holders``: each is a leftover of the dead recorded ``holder`` in
    this very PID namespace. A pid that does not exist here proves nothing (another namespace has its own)."""
    started, session = holder.get("pid_start"), holder.get("sid")
    if here is None or holder.get("pid_ns") != here or not isinstance(started, int) or not holders:
        return False  # recorded elsewhere (another PID namespace or an older record), or nothing seen holding it
    if holder.get("host") != socket.gethostname():
        return False
    for found in holders:
        if found.placer not in (0, holder["pid"]):
            return False  # the kernel says a process other than the recorded one took it: the record is not its
        if found.namespace != here or found.start is None or found.start < started:
            return False  # another namespace's process, or one older than the holder: not a process it left
        if not isinstance(session, int) or found.session != session:
            return False  # not of the holder's session: not one it forked
    return True


def _lock_holders(fd: int) -> list[_Holder]:
    """The processes holding the flock on the file ``fd`` opened: each one whose open descriptor of that file
    carries the lock (``lock:`` in /proc/<pid>/fdinfo), with the pid the kernel records as the lock's taker."""
    stat_ = os.fstat(fd)
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                for link in os.scandir(f"/proc/{entry.name}/fd"):
                    target = os.stat(link.path)
                    if (target.st_dev, target.st_ino) != (stat_.st_dev, stat_.st_ino):
                        continue
                    placer = _flock_placer(f"/proc/{entry.name}/fdinfo/{link.name}")
                    if placer is None:
                        continue  # open, but not locked through this descriptor: a waiter like us
                    with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                        line = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
                    found.append(
                        _Holder(int(entry.name), line, placer, _pid_namespace(entry.name),
                                _start_time(entry.name), _stat_field(entry.name, 3))
                    )  # fmt: skip
                    break
    return found


def _flock_placer(fdinfo: str) -> int | None:
    """The pid on the ``lock: ... FLOCK ... WRITE <pid> ...`` line of a descriptor's fdinfo, None without one."""
    try:
        with open(fdinfo, encoding="ascii", errors="replace") as handle:
            for line in handle:
                fields = line.split()
                if fields[:1] == ["lock:"] and "FLOCK" in fields and "WRITE" in fields:
                    return int(fields[fields.index("WRITE") + 1])
    except (OSError, ValueError, IndexError):
        return None
    return None


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


def _takeover_note(path: Path, resource: Resource, holder: dict[str, Any], left: list[str]) -> str:
    who = "; ".join(left) if left else "a process that has since ended"
    return (
        f"{display_path(path)}: {resource.label} was locked by `{holder.get('command')}` (pid {holder['pid']}), "
        f"which is gone; the lock was still held by what it left behind ({who}) and is now taken over. "
        "A process named here may still be running for the dead command: end it if it is."
    )


def _busy_message(path: Path, resource: Resource, holder: dict[str, Any] | None, command: str, found: _Holders) -> str:
    if holder is not None and {"command", "pid", "started"} <= set(holder):
        who = f"`{holder['command']}` (pid {holder['pid']}, since {holder['started']})"
    else:
        who = "another `mesh` run"
    held = ""
    if holder is not None and _gone(holder):  # pid 1 of another PID namespace, say: name what truly holds it
        processes = "; ".join(found.described) or "a process this one cannot see (another PID namespace or user)"
        held = (
            f" (no process of that pid and start time runs here, yet the lock is held by {processes}: not provably "
            "a process that run left behind, so it is not taken over)"
        )
    return (
        f"{display_path(path)}: {resource.label} is busy: {who} is writing it{held}. `{command}` did nothing; run "
        "it again when that one has finished, or give --wait SECONDS to wait for it."
    )
