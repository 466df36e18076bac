"""Writing files so readers never see a part of one, and hashing them once per process."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_HASHED: dict[tuple[str, int, int, int, int], str] = {}  # (path, inode, size, mtime, ctime) -> sha256, per process


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str) -> None:
    """Write ``path`` so a reader sees the old or the new content, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(partial, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:  # a full disk, a kill: the old file stays whole, and no partial one lingers
        partial.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


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
