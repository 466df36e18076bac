"""Writing files so readers never see a part of one and no write follows a symbolic link; hashing them once.

Every file the mesh writes (the exchange's files and log, locks, receipts, state, reports) is opened
with ``O_NOFOLLOW``: a link planted where the mesh writes (to a file outside the mesh, or to another
domain's) is refused with a located error, and the file it points to stays untouched.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

from mesh_tools.core.errors import StorageError, display_path

_HASHED: dict[tuple[str, int, int, int, int], str] = {}  # (path, inode, size, mtime, ctime) -> sha256, per process
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def link_refused(path: Path) -> StorageError:
    """The error for a symbolic link found where the mesh writes a file."""
    try:
        points = f" (to {os.readlink(path)})"
    except OSError:
        points = ""
    shown = str(Path(display_path(path.parent)) / path.name)  # the link's own place, not where it points
    return StorageError(
        f"{shown}: is a symbolic link{points}; the mesh never writes through one, so the file it points to was "
        f"left untouched. Remove the link (`rm {shown}`) and run again."
    )


def refuse_link(path: Path) -> None:
    """StorageError (exit 3) when ``path`` is a symbolic link: the mesh is about to write there."""
    if os.path.islink(path):
        raise link_refused(path)


def open_nofollow(path: Path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` that never follows a symbolic link at ``path`` (a located StorageError instead)."""
    try:
        return os.open(path, flags | _NOFOLLOW, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP or (exc.errno == errno.EEXIST and os.path.islink(path)):
            raise link_refused(path) from None
        raise


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_partial(path: Path) -> tuple[Path, int]:
    """A new scratch file beside ``path``, created here (``O_EXCL``): never one planted in advance."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        return partial, open_nofollow(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except (FileExistsError, StorageError):  # a dead process of the same pid left it (or a link was planted)
        partial.unlink()  # removes the link itself, never what it points to
        return partial, open_nofollow(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL)


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write ``path`` so a reader sees the old or the new content, never a part; never through a link."""
    path.parent.mkdir(parents=True, exist_ok=True)
    refuse_link(path)
    data = text.encode("utf-8") if isinstance(text, str) else text
    partial, fd = create_partial(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)  # a link planted meanwhile is replaced itself, its target untouched
    except BaseException:  # a full disk, a kill: the old file stays whole, and no partial one lingers
        partial.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def append_durably(path: Path, data: bytes) -> None:
    """Append ``data`` to ``path`` in one write (a line readers see whole) and sync it; never through a link."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_into(fd: int, source: Path) -> None:
    """Copy ``source`` into the file open for writing as ``fd`` (then closed), synced."""
    with os.fdopen(fd, "wb") as out, open(source, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            out.write(block)
        out.flush()
        os.fsync(out.fileno())


def file_sha256(path: Path) -> str:
    """The file's SHA-256, read once per process while the file is the same: same inode, size, modification
    and change time (a change time cannot be set back, as `cp -p` or `touch -r` set a modification time)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if key not in _HASHED:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(2**20), b""):
                digest.update(block)
        _HASHED[key] = digest.hexdigest()
    return _HASHED[key]
