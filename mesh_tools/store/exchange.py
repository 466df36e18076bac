"""Reading and writing the exchange folder: paths, the current pointer, releases, the log."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mesh_tools.core.errors import ArtifactError, ConfigError, StorageError, display_path
from mesh_tools.core.files import file_sha256, write_atomic
from mesh_tools.core.mesh import Domain
from mesh_tools.core.paths import RELEASE_ID, safe_name, safe_release_id, safe_version
from mesh_tools.model.nodes import product_key
from mesh_tools.model.release import ReleaseDescriptor


def new_release_id(salt: str) -> str:
    now = datetime.now(UTC)
    digest = hashlib.sha256(f"{now.isoformat()}|{salt}|{os.getpid()}".encode()).hexdigest()[:6]
    return f"r{now:%Y%m%dT%H%M%S%f}Z-{digest}"


def pin_for(domain: Domain, project: str, model: str, version: str | None, latest: str | None) -> str | None:
    """The release ``domain`` pins for a product: by ``project.model.vN``, or ``project.model`` for its latest."""
    pin = domain.pins.get(product_key(project, model, version))
    if pin is None and (version is None or version == latest):
        pin = domain.pins.get(f"{project}.{model}")
    return pin


@dataclass(frozen=True)
class Release:
    """A complete release on disk: its descriptor and where its data is."""

    descriptor: ReleaseDescriptor
    folder: Path

    @property
    def data_path(self) -> Path:
        """The data file every consumer may read (PII columns masked)."""
        return self.data_path_for(None)

    def data_path_for(self, consumer: str | None) -> Path:
        """The data file ``consumer``'s stub reads: the one whose readers name it, else the shared one."""
        files = self.descriptor.files
        named = [f for f in files if f.readers is not None and consumer is not None and consumer in f.readers]
        shared = [f for f in files if f.readers is None]
        chosen = named or shared
        if not chosen:
            raise ArtifactError(
                f"{display_path(self.folder / 'release.json')}: release {self.descriptor.release_id} has no data "
                "file every consumer may read. Publish again with "
                f"`mesh publish {self.descriptor.project}`."
            )
        return self.folder / chosen[0].path


class Exchange:
    """The exchange folder of a mesh."""

    def __init__(self, root: Path):
        self.root = root

    # -- paths
    def product_dir(self, project: str, model: str, version: str | None) -> Path:
        """The product's folder; a name that could leave it (``../``, ``/``) is refused, never followed."""
        where = f"exchange product {project!r}.{model!r}"
        safe_name(project, "project", where)
        safe_name(model, "model", where)
        folder = f"v{safe_version(version, where)}" if version is not None else "unversioned"
        return self.root / "products" / project / model / folder

    def releases_dir(self, project: str, model: str, version: str | None) -> Path:
        return self.product_dir(project, model, version) / "releases"

    @property
    def log_path(self) -> Path:
        return self.root / "log.jsonl"

    @property
    def tmp_dir(self) -> Path:
        return self.root / ".tmp"

    def receipt_path(self, consumer: str) -> Path:
        return self.root / "receipts" / f"{safe_name(consumer, 'consumer', 'exchange receipt')}.json"

    def lease_path(self, consumer: str) -> Path:
        return self.root / "leases" / f"{safe_name(consumer, 'consumer', 'exchange lease')}.json"

    def writable(self) -> bool:
        """Whether this process may write the exchange (a read-only mount or share says no, even to root)."""
        probe = self.root
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        return os.access(probe, os.W_OK)

    def require_writable(self, why: str) -> None:
        """StorageError naming the folder, when the exchange cannot be written."""
        if not self.writable():
            raise StorageError(
                f"{display_path(self.root)}: the exchange is read-only here, and {why} writes to it. "
                "Consumers can still build from it with `mesh build --no-publish`; publishing needs write access."
            )

    # -- reading releases
    def load_release(self, folder: Path, *, verify: bool = True) -> Release:
        """A release, verified: descriptor readable and about this folder, data file present with its size
        and (``verify``) its SHA-256."""
        path = folder / "release.json"
        try:
            descriptor = ReleaseDescriptor.model_validate_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ArtifactError(
                f"{display_path(path)}: release descriptor missing; the release is incomplete."
            ) from None
        except (ValueError, OSError) as exc:
            first = str(exc).splitlines()[0]
            raise ArtifactError(f"{display_path(path)}: release descriptor is corrupt ({first}).") from None
        d = descriptor
        if d.release_id != folder.name or (
            self.product_dir(d.project, d.model, d.version).resolve() != folder.parent.parent.resolve()
        ):
            raise ArtifactError(
                f"{display_path(path)}: the descriptor says {d.product} release {d.release_id!r}, but it lives in "
                f"{display_path(folder)}. A release is read only from its own folder; publish again with "
                f"`mesh publish {d.project}`."
            )
        for file in descriptor.files:
            if Path(file.path).name != file.path or file.path.startswith("."):
                raise ArtifactError(
                    f"{display_path(path)}: data file {file.path!r} is not a file of the release folder. "
                    f"Publish again with `mesh publish {d.project}`."
                )
            data = folder / file.path
            if not data.is_file() or data.stat().st_size != file.bytes:
                raise ArtifactError(
                    f"{display_path(data)}: data file of release {descriptor.release_id} is missing or truncated "
                    f"(expected {file.bytes} bytes). The exchange does not serve partial releases; publish again "
                    f"with `mesh publish {descriptor.project}`."
                )
            if verify and file_sha256(data) != file.sha256.removeprefix("sha256:"):
                raise ArtifactError(
                    f"{display_path(data)}: data file of release {descriptor.release_id} does not match the SHA-256 "
                    "its descriptor records: it was changed after publishing. The exchange does not serve it; "
                    f"publish again with `mesh publish {descriptor.project}`, or pin another release."
                )
        return Release(descriptor, folder)

    def release_ids(self, project: str, model: str, version: str | None) -> list[str]:
        folder = self.releases_dir(project, model, version)
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and RELEASE_ID.match(p.name))

    def current_id(self, project: str, model: str, version: str | None) -> str | None:
        path = self.product_dir(project, model, version) / "current.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            release_id = data["release_id"]
            if not isinstance(release_id, str) or not RELEASE_ID.match(release_id):
                raise ValueError(f"{str(release_id)[:80]!r} is not a release id")
            return release_id
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(
                f"{display_path(path)}: current-release pointer is corrupt ({exc}). Publish again with "
                f"`mesh publish {project}`."
            ) from None

    def switch_current(self, descriptor: ReleaseDescriptor) -> None:
        """Make a complete release the one consumers read: one atomic replace of the pointer."""
        d = descriptor
        pointer = json.dumps({"release_id": safe_release_id(d.release_id, "release"), "product": d.product})
        write_atomic(self.product_dir(d.project, d.model, d.version) / "current.json", pointer + "\n")

    def current(self, project: str, model: str, version: str | None, *, verify: bool = True) -> Release | None:
        release_id = self.current_id(project, model, version)
        if release_id is None:
            return None
        return self.load_release(self.releases_dir(project, model, version) / release_id, verify=verify)

    def resolve(
        self, project: str, model: str, version: str | None, pin: str | None, pinned_by: str = ""
    ) -> Release | None:
        """The release a consumer reads: its pin if it has one, else the current release."""
        if pin is None:
            return self.current(project, model, version)
        folder = self.releases_dir(project, model, version) / safe_release_id(pin, pinned_by or "pin")
        if not folder.is_dir():
            available = self.release_ids(project, model, version)
            listed = ", ".join(available[-10:]) if available else "none"
            raise ConfigError(
                f"{pinned_by}: pinned release '{pin}' of {product_key(project, model, version)} does not exist. "
                f"Available releases (newest last): {listed}."
            )
        return self.load_release(folder)

    # -- the log
    def append_log(self, event: dict[str, Any]) -> None:
        """Append one event; each line is written whole and synced before the call returns."""
        self.root.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"at": datetime.now(UTC).isoformat(), **event}, sort_keys=True) + "\n"
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def read_log(self) -> Iterator[dict[str, Any]]:
        """Every event of the log; a corrupt line is an error naming the line."""
        if not self.log_path.is_file():
            return
        with open(self.log_path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    if not line.endswith("\n"):
                        return  # a last line cut by a killed writer: it never completed
                    raise ArtifactError(
                        f"{display_path(self.log_path)}:{number}: publication log entry is corrupt. "
                        "Fix or remove that line (the releases themselves are intact)."
                    ) from None
                yield event
