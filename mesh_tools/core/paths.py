"""Names that become paths, and folders the mesh writes: never trusted, never outside their root.

Every name read from a file someone else wrote (a project, model or version in a manifest, a
domain in mesh.yml, a release id in a pin or a pointer) is checked against a strict pattern
before it is joined to a path; an output folder is replaced only when a marker file says the
mesh wrote it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mesh_tools.core.errors import ConfigError, StorageError, display_path

# dbt project and model names are identifiers; domains add '-' (folder names in the wild).
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,127}$")
# dbt model versions: '2', '1.5', 'beta_2' ...
_VERSION = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]|\.(?!\.)){0,63}$")
RELEASE_ID = re.compile(r"^r\d{8}T\d{12}Z-[0-9a-f]{6}$")

# The file that marks a folder as written by the mesh (so the mesh may replace it).
MARKER = ".mesh-output"


def safe_name(value: object, what: str, where: str) -> str:
    """``value`` if it can be a folder or file name, else a ConfigError naming ``where`` it came from."""
    text = str(value)
    if isinstance(value, str | int) and _NAME.fullmatch(text):
        return text
    raise ConfigError(
        f"{where}: {what} {_shown(value)} cannot name a folder (letters, digits, '_' and '-' only, no '/', "
        "no '..'). Rename it."
    )


def safe_version(value: object, where: str) -> str:
    text = str(value)
    if isinstance(value, str | int | float) and _VERSION.fullmatch(text):
        return text
    raise ConfigError(
        f"{where}: model version {_shown(value)} cannot name a folder (letters, digits, '_', '-' and single '.', "
        "no '/'). Use a version such as 2 or '1.5'."
    )


def safe_release_id(value: object, where: str) -> str:
    if isinstance(value, str) and RELEASE_ID.fullmatch(value):
        return value
    raise ConfigError(
        f"{where}: {_shown(value)} is not a release id (rYYYYMMDDTHHMMSSffffffZ-xxxxxx). "
        "`mesh status` lists the releases."
    )


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def is_within(path: Path, root: Path) -> bool:
    path, root = path.resolve(), root.resolve()
    return path == root or root in path.parents


def require_writable(path: Path, what: str, why: str) -> None:
    """StorageError naming the folder, when ``path`` (or, while it does not exist, its nearest existing
    folder) cannot be written by this process: a read-only mount or share refuses even root."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if os.access(probe, os.W_OK):
        return
    try:
        read_only = bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    cause = "is on a read-only file system" if read_only else "is not writable by this user"
    fix = (
        "remount it read-write" if read_only else "run as a user who may write there, or fix its owner and permissions"
    )
    raise StorageError(
        f"{display_path(probe)}: {what} {cause}, and {why}. Make the folder writable ({fix}) and run again, "
        "or run the command in a writable copy of the project."
    )


def check_output_folder(out: Path, *, mesh_root: Path, protected: dict[str, Path], command: str) -> None:
    """Refuse an output folder that would replace something the mesh did not write.

    ``protected``: folders (domains, the exchange) that an output may be neither inside nor around. An
    existing folder is replaced only when it is empty or carries the marker file: what its entries look
    like proves nothing (a Vite ``dist/`` or a hand-written homepage holds ``index.html`` and ``assets/`` too)."""
    target = out.resolve()
    if is_within(mesh_root, target):
        raise ConfigError(
            f"{display_path(out)}: `{command}` would replace the folder holding the mesh ({display_path(mesh_root)}). "
            "Choose an output folder of its own (the default is fine)."
        )
    for what, folder in protected.items():
        if is_within(target, folder) or is_within(folder, target):
            raise ConfigError(
                f"{display_path(out)}: `{command}` would write over {what} ({display_path(folder)}). "
                "Choose an output folder of its own."
            )
    if out.is_symlink() or (target.exists() and not target.is_dir()):
        raise ConfigError(f"{display_path(out)}: is a symbolic link or not a folder. Choose another output folder.")
    entries = {p.name for p in target.iterdir()} if target.is_dir() else set()
    if entries and not (target / MARKER).is_file():
        raise ConfigError(
            f"{display_path(out)}: the folder exists and was not written by `{command}` (it has no {MARKER} file), "
            "so it is not replaced. Choose another output folder, or empty it yourself."
        )


def mark_output_folder(folder: Path, command: str) -> None:
    (folder / MARKER).write_text(
        f"Written by `{command}` of mesh-tools: the whole folder is replaced on its next run.\n", encoding="utf-8"
    )
