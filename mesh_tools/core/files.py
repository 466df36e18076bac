"""Writing files so readers never see a part of one and no write follows a symbolic link; hashing them once.

Every file the mesh writes (the exchange's files and log, locks, receipts, state, reports) is opened
with ``O_NOFOLLOW``: a link planted where the mesh writes (to a file outside the mesh, or to another
domain's) is refused with a located error, and the file it points to stays untouched.

A write given ``below`` (the exchange's root, the mesh root for ``.mesh/`` and the health folder)
also follows no link in the folders between that root and the file: it walks down from the root one
folder at a time (``openat`` with ``O_NOFOLLOW``, creating what is missing) and writes relative to
the folder it reached, so a folder swapped for a link (``exchange/receipts -> /outside``) is refused,
not written through, even when the swap happens while the mesh runs. The root itself may be a link
(a mounted share often is).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from mesh_tools.core.errors import StorageError, display_path

_HASHED: dict[tuple[str, int, int, int, int], str] = {}  # (path, inode, size, mtime, ctime) -> sha256, per process
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def link_refused(path: Path, *, folder: bool = False) -> StorageError:
    """The error for a symbolic link found where the mesh writes a file (``folder``: on the way to one)."""
    try:
        points = f" (to {os.readlink(path)})"
    except OSError:
        points = ""
    shown = str(Path(display_path(path.parent)) / path.name)  # the link's own place, not where it points
    what = "the folder it points to was left untouched" if folder else "the file it points to was left untouched"
    return StorageError(
        f"{shown}: is a symbolic link{points}; the mesh never writes through one, so {what}. "
        f"Remove the link (`rm {shown}`) and run again."
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


_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


@contextlib.contextmanager
def _named(path: Path) -> Iterator[None]:
    """OSErrors of calls made relative to a folder descriptor name ``path`` (they would name only its last part)."""
    try:
        yield
    except StorageError:
        raise
    except OSError as exc:
        raise type(exc)(exc.errno, exc.strerror, str(path)) from None


def open_folder(folder: Path, below: Path | None = None, *, create: bool = True) -> int:
    """A descriptor of ``folder``, created when missing (``create``; else FileNotFoundError).

    With ``below`` (a folder ``folder`` lies in), reached from ``below`` one folder at a time without
    following a symbolic link: a link on the way is a StorageError naming it (``below`` itself may be one).
    """
    if below is None:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        return os.open(folder, _DIR_FLAGS)
    parts = folder.relative_to(below).parts  # a folder outside ``below`` is a bug: ValueError
    if create:
        below.mkdir(parents=True, exist_ok=True)
    fd = os.open(below, _DIR_FLAGS)
    here = below
    try:
        for part in parts:
            here = here / part
            with _named(here):
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=fd)
                try:
                    inner = os.open(part, _DIR_FLAGS | _NOFOLLOW, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link(part, fd):
                        raise link_refused(here, folder=True) from None
                    raise
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def ensure_folder(folder: Path, below: Path) -> Path:
    """Create ``folder`` (and what is missing between ``below`` and it), refusing a symbolic link on the way.

    For writers that must name a path (DuckDB, dbt, a rename): the folders are checked as they are made;
    the file itself is still opened without following a link."""
    os.close(open_folder(folder, below))
    return folder


def check_below(path: Path, below: Path, *, folder: bool = True) -> None:
    """StorageError when ``path`` (a folder, unless ``folder`` is False) or a folder between ``below`` and it is a
    symbolic link; what does not exist yet is fine."""
    here = below
    for part in path.relative_to(below).parts:
        here = here / part
        try:
            mode = os.lstat(here).st_mode
        except FileNotFoundError:
            return
        if stat.S_ISLNK(mode):
            raise link_refused(here, folder=folder or here != path)


def _is_link(name: str, folder_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=folder_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _new_file(name: str, folder_fd: int, path: Path) -> int:
    """Create ``name`` new (``O_EXCL``) in the folder; one left by a dead process of our pid is removed first."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
    with _named(path):
        try:
            return os.open(name, flags, 0o644, dir_fd=folder_fd)
        except FileExistsError:  # a dead process of the same pid left it (or a link was planted): never written
            os.unlink(name, dir_fd=folder_fd)  # removes a link itself, never what it points to
            return os.open(name, flags, 0o644, dir_fd=folder_fd)


def create_once(path: Path, fill: Callable[[int], None], *, below: Path | None = None) -> None:
    """Create ``path`` whole (``fill`` writes the open descriptor, syncs and closes it) only if the name is free:
    FileExistsError when it exists (a link too), never overwritten; never through a link (see ``open_folder``)."""
    folder = open_folder(path.parent, below)
    try:
        partial = f".{path.name}.{os.getpid()}.partial"
        fd = _new_file(partial, folder, path.parent / partial)
        try:
            fill(fd)
            # fails when the name exists, a link included: never overwrites
            os.link(partial, path.name, src_dir_fd=folder, dst_dir_fd=folder, follow_symlinks=False)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial, dir_fd=folder)
        os.fsync(folder)
    finally:
        os.close(folder)


def remove_below(path: Path, below: Path | None = None, *, tree: bool = False) -> None:
    """Remove the file (``tree``: the folder and all in it) at ``path``, reached without following a link on the
    way; gone already is fine. A link at ``path`` itself is removed, never what it points to."""
    try:
        folder = open_folder(path.parent, below, create=False)
    except FileNotFoundError:
        return
    try:
        if tree:
            import shutil

            if not _is_link(path.name, folder):
                shutil.rmtree(path.name, ignore_errors=True, dir_fd=folder)
                return
        with contextlib.suppress(FileNotFoundError), _named(path):
            os.unlink(path.name, dir_fd=folder)
    finally:
        os.close(folder)


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


def write_atomic(path: Path, text: str | bytes, *, below: Path | None = None, durable: bool = True) -> None:
    """Write ``path`` so a reader sees the old or the new content, never a part; never through a link (with
    ``below``, none in the folders between it and ``path`` either: see ``open_folder``). ``durable``: on disk
    before it returns (fsync), so a crash keeps it; a file written again whenever it is lost need not be."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    folder = open_folder(path.parent, below)
    try:
        if _is_link(path.name, folder):
            raise link_refused(path)
        partial = f".{path.name}.{os.getpid()}.partial"
        fd = _new_file(partial, folder, path.parent / partial)
        try:
            with os.fdopen(fd, "wb") as handle, _named(path):
                handle.write(data)
                handle.flush()
                if durable:
                    os.fsync(handle.fileno())
            with _named(path):  # a link planted meanwhile is replaced itself, its target untouched
                os.replace(partial, path.name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:  # a full disk, a kill: the old file stays whole, and no partial one lingers
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial, dir_fd=folder)
            raise
        if durable:
            os.fsync(folder)
    finally:
        os.close(folder)


def append_durably(path: Path, data: bytes, *, below: Path | None = None) -> None:
    """Append ``data`` to ``path`` in one write (a line readers see whole) and sync it; never through a link (with
    ``below``, none in the folders between it and ``path`` either)."""
    folder = open_folder(path.parent, below)
    try:
        with _named(path):
            try:
                fd = os.open(path.name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW, 0o644, dir_fd=folder)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise link_refused(path) from None
                raise
    finally:
        os.close(folder)
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
