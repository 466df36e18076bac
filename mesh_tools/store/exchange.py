"""Reading and writing the exchange: pointers per channel, releases, receipts, leases, the log.

The exchange is a folder or an object store (store/backends.py); this module speaks in keys and
is the same for both. A release read from an object store is fetched once into a local cache,
named by its SHA-256 and verified against its descriptor before any engine reads it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mesh_tools.core.channels import PROD, check_channel
from mesh_tools.core.errors import ArtifactError, ConfigError, StorageError, display_path
from mesh_tools.core.files import (
    append_durably,
    check_below,
    ensure_folder,
    file_sha256,
    link_refused,
    open_folder,
    remove_below,
    write_atomic,
)
from mesh_tools.core.jsonfile import loads
from mesh_tools.core.mesh import Domain, Mesh
from mesh_tools.core.paths import RELEASE_ID, safe_name, safe_release_id, safe_version
from mesh_tools.model.interface import INTERFACE_LIMIT  # bounds the descriptors too (each carries its node)
from mesh_tools.model.nodes import product_key
from mesh_tools.model.odcs import CONTRACT_FILE, local_server, s3_server
from mesh_tools.model.release import Confirmation, ReleaseDescriptor
from mesh_tools.store.backends import Backend, Conflict, FolderBackend, S3Backend

ENV_VARIABLE = "MESH_ENV"
LOG_FILE = "log.jsonl"
ORPHAN_SECONDS = 3600  # an unfinished release older than this is a dead publisher's: swept


def new_release_id(salt: str) -> str:
    now = datetime.now(UTC)
    digest = hashlib.sha256(f"{now.isoformat()}|{salt}|{os.getpid()}".encode()).hexdigest()[:6]
    return f"r{now:%Y%m%dT%H%M%S%f}Z-{digest}"


def current_env() -> str:
    """The environment (channel) of this run: ``mesh --env NAME`` / ``MESH_ENV``, else prod."""
    return check_channel(os.environ.get(ENV_VARIABLE) or PROD, f"--env / {ENV_VARIABLE}")


def _env_settings(domain: Domain, env: str) -> Any:
    return domain.environments.get(env)


def pin_for(
    domain: Domain, project: str, model: str, version: str | None, latest: str | None, env: str | None = None
) -> str | None:
    """The release ``domain`` pins for a product: by ``project.model.vN``, or ``project.model`` for its latest.
    A pin of the environment (``environments.<env>.pins``) comes before the domain's own pins."""
    settings = _env_settings(domain, env or current_env())
    for pins in ([settings.pins] if settings else []) + [domain.pins]:
        pin = pins.get(product_key(project, model, version))
        if pin is None and (version is None or version == latest):
            pin = pins.get(product_key(project, model, None))
        if pin is not None:
            return pin
    return None


def channels_for(domain: Domain, project: str, model: str, version: str | None, env: str | None = None) -> list[str]:
    """The channels ``domain`` reads a product from, first found wins: ``environments.<env>.channels`` for
    the product, its model or its project; by default this environment's channel, then prod."""
    env = env or current_env()
    settings = _env_settings(domain, env)
    if settings is not None:
        for key in (product_key(project, model, version), product_key(project, model, None), project):
            if key in settings.channels:
                chosen = settings.channels[key]
                return [chosen] if isinstance(chosen, str) else list(chosen)
    return list(dict.fromkeys([env, PROD]))


def interface_channels(domain: Domain, project: str, env: str | None = None) -> list[str]:
    """The channels whose published interface ``domain`` stitches ``project`` against: the project's
    ``environments.<env>.channels`` setting, else this environment's, then prod."""
    env = env or current_env()
    settings = _env_settings(domain, env)
    chosen = settings.channels.get(project) if settings is not None else None
    channels = ([chosen] if isinstance(chosen, str) else list(chosen)) if chosen else [env, PROD]
    return list(dict.fromkeys(channels))


def wanted_release(exchange: Exchange, domain: Domain, project: str, model: str, version: str | None) -> str | None:
    """The release ``domain`` would read of a product now: its pin, else the first of its channels' current."""
    current = None
    for channel in channels_for(domain, project, model, version, exchange.env):
        current = exchange.current_id(project, model, version, channel)
        if current is not None:
            break
    latest = None
    if current is not None:
        key = f"{exchange.release_prefix(project, model, version, current)}/release.json"
        try:
            latest = loads(exchange.backend.read(key) or b"{}").get("latest_version")
        except (OSError, ValueError, AttributeError):
            latest = None
    return pin_for(domain, project, model, version, latest, exchange.env) or current


@dataclass(frozen=True)
class Release:
    """A complete release: its descriptor, where it lives, and the way to a local copy of its files."""

    descriptor: ReleaseDescriptor
    folder: Path | None  # its folder in a folder exchange; None in an object store
    where: str = ""  # how messages name it
    exchange: Exchange | None = field(default=None, compare=False, repr=False)
    channel: str | None = None  # the channel it was resolved through, when it was

    @property
    def data_path(self) -> Path:
        """The data file every consumer may read (PII columns masked)."""
        return self.data_path_for(None)

    def data_path_for(self, consumer: str | None) -> Path:
        """The data file ``consumer``'s stub reads: the one whose readers name it, else the shared one (a local
        file: in an object store, the verified copy in the cache)."""
        files = self.descriptor.files
        named = [f for f in files if f.readers is not None and consumer is not None and consumer in f.readers]
        shared = [f for f in files if f.readers is None]
        chosen = named or shared
        if not chosen:
            raise ArtifactError(
                f"{self.where}/release.json: release {self.descriptor.release_id} has no data "
                "file every consumer may read. Publish again with "
                f"`mesh publish {self.descriptor.project}`."
            )
        if self.folder is not None:
            return self.folder / chosen[0].path
        assert self.exchange is not None
        return self.exchange.cached(self, chosen[0].path)


class Exchange:
    """The exchange of a mesh: a folder (``Exchange(path)``) or an object store (``open_exchange``)."""

    def __init__(
        self, root: Path, *, backend: Backend | None = None, env: str | None = None, anchor: Path | None = None
    ):
        """``root``: the exchange folder; with ``backend`` (an object store), the local folder of its cache.
        ``anchor``: the folder from which every write below ``root`` follows no symbolic link (default: ``root``
        itself, which may be one; the mesh root for a cache inside the mesh)."""
        self.root = root
        self.anchor = anchor or root
        self.backend: Backend = backend or FolderBackend(root)
        self.local = isinstance(self.backend, FolderBackend)
        self.env = check_channel(env, "the exchange's environment") if env else current_env()

    @property
    def url(self) -> str:
        return self.backend.display()

    # -- keys and paths
    def product_prefix(self, project: str, model: str, version: str | None) -> str:
        """The product's key prefix; a name that could leave it (``../``, ``/``) is refused, never followed."""
        where = f"exchange product {project!r}.{model!r}"
        safe_name(project, "project", where)
        safe_name(model, "model", where)
        folder = f"v{safe_version(version, where)}" if version is not None else "unversioned"
        return f"products/{project}/{model}/{folder}"

    def release_prefix(self, project: str, model: str, version: str | None, release_id: str) -> str:
        return f"{self.product_prefix(project, model, version)}/releases/{safe_release_id(release_id, 'release')}"

    def pointer_key(self, project: str, model: str, version: str | None, channel: str | None = None) -> str:
        channel = check_channel(channel or self.env, "exchange pointer")
        name = "current.json" if channel == PROD else f"channels/{channel}.json"
        return f"{self.product_prefix(project, model, version)}/{name}"

    def interface_key(self, project: str, channel: str | None = None) -> str:
        """The public interface (manifest of public models) a producer published in a channel."""
        channel = check_channel(channel or self.env, "exchange interface")
        return f"interfaces/{safe_name(project, 'project', 'exchange interface')}/{channel}.json"

    def fetch_interface(self, project: str, channels: list[str]) -> Path | None:
        """The published interface of ``project`` from the first of ``channels`` that has one, as a local file
        (the cache), or None when it never published one. One over ``INTERFACE_LIMIT`` bytes is refused
        before it is downloaded (ArtifactError): another checkout's file never fills this one's memory."""
        for channel in channels:
            key = self.interface_key(project, channel)
            listed = {e.key: e.size for e in self.backend.listing(key.rsplit("/", 1)[0])}
            if listed.get(key, 0) > INTERFACE_LIMIT:
                raise self._interface_too_big(key, listed[key])
            raw = self.backend.read(key)
            if raw is None:
                continue
            if len(raw) > INTERFACE_LIMIT:  # replaced by a bigger one since it was listed
                raise self._interface_too_big(key, len(raw))
            path = self.interface_cache(project, channel)
            if path.is_file() and path.read_bytes() == raw:
                return path  # unchanged: its file stays as it was (build state compares its stat)
            write_atomic(path, raw, below=self.anchor)
            return path
        return None

    def _interface_too_big(self, key: str, size: int) -> ArtifactError:
        project = key.split("/")[1]
        return ArtifactError(
            f"{self.backend.display(key)}: the interface {project} published is {size:,} bytes, over the limit of "
            f"{INTERFACE_LIMIT:,} (the public models of a project, without their SQL, are far smaller). It is not "
            f"read: ask {project}'s team to publish again (`mesh publish {project}`)."
        )

    def interface_cache(self, project: str, channel: str) -> Path:
        channel = check_channel(channel, "exchange interface")
        return self.root / "interfaces" / safe_name(project, "project", "exchange interface") / f"{channel}.json"

    def product_dir(self, project: str, model: str, version: str | None) -> Path:
        return self.root / self.product_prefix(project, model, version)

    def releases_dir(self, project: str, model: str, version: str | None) -> Path:
        return self.product_dir(project, model, version) / "releases"

    @property
    def log_path(self) -> Path:
        return self.root / LOG_FILE

    @property
    def tmp_dir(self) -> Path:
        """Where releases are written before they are placed (never read); StorageError when it (or a folder on
        the way to it) is a symbolic link: a release is never written out of the exchange."""
        folder = self.root / (".tmp" if self.local else "tmp")
        check_below(folder, self.anchor)
        return folder

    def _holder_key(self, kind: str, consumer: str, env: str | None = None) -> str:
        name = safe_name(consumer, "consumer", f"exchange {kind[:-1]}")
        env = env or self.env
        return f"{kind}/{name}.json" if env == PROD else f"{kind}/{check_channel(env, kind)}/{name}.json"

    def receipt_key(self, consumer: str, env: str | None = None) -> str:
        return self._holder_key("receipts", consumer, env)

    def lease_key(self, consumer: str, env: str | None = None) -> str:
        return self._holder_key("leases", consumer, env)

    def receipt_path(self, consumer: str) -> Path:
        return self.root / self.receipt_key(consumer)

    def lease_path(self, consumer: str) -> Path:
        return self.root / self.lease_key(consumer)

    def holders(self, kind: str) -> list[str]:
        """Every receipt (``kind`` "receipts") or lease ("leases") key, of every environment."""
        return [e.key for e in self.backend.listing(kind) if e.key.endswith(".json")]

    def refuse_links(self, projects: Iterable[str] = ()) -> None:
        """StorageError (exit 3) naming the first symbolic link among the folders of the exchange a run writes:
        its own folders (receipts, leases, the log, scratch, caches, with everything below them) and the product
        folders of ``projects``. Run before any dbt, so a planted link costs no build; every write checks again
        on its own way down (core/files.py ``open_folder``)."""
        check_below(self.root, self.anchor)  # a cache inside the mesh: no link from the mesh root on
        tops = ["receipts", "leases", "interfaces", ".tmp" if self.local else "tmp"]
        tops += [] if self.local else ["log", "objects"]
        tops += [f"products/{safe_name(p, 'project', 'exchange products')}" for p in projects]
        for top in tops:
            folder = self.root / top
            check_below(folder, self.root)
            for here, dirs, _files in os.walk(folder):  # never into a linked folder: each is refused here
                for name in dirs:
                    if os.path.islink(os.path.join(here, name)):
                        raise link_refused(Path(here) / name, folder=True)

    def writable(self) -> bool:
        """Whether this process may write the exchange (a read-only mount or share says no, even to root)."""
        return self.backend.writable()

    def require_writable(self, why: str) -> None:
        """StorageError naming the folder, when the exchange cannot be written."""
        if not self.writable():
            raise StorageError(
                f"{self.url}: the exchange is read-only here, and {why} writes to it. "
                "Consumers can still build from it with `mesh build --no-publish`; publishing needs write access."
            )

    # -- reading releases
    def load_release(self, folder: Path, *, verify: bool = True) -> Release:
        """The release in ``folder`` of a folder exchange (see ``load``)."""
        try:
            parts = folder.resolve().relative_to(self.root.resolve()).parts
        except ValueError:
            parts = ()
        if len(parts) != 6 or parts[0] != "products" or parts[4] != "releases":
            raise ArtifactError(f"{display_path(folder)}: not a release folder of the exchange {self.url}.")
        version = None if parts[3] == "unversioned" else parts[3].removeprefix("v")
        return self.load(parts[1], parts[2], version, parts[5], verify=verify)

    def load(
        self, project: str, model: str, version: str | None, release_id: str, *, verify: bool = True,
        refetch: bool = False,
    ) -> Release:  # fmt: skip
        """A release, checked: descriptor readable and about this place, data files present with their sizes
        and (``verify``) their SHA-256. In an object store nothing is fetched here: the one file a consumer
        reads is fetched and verified when it asks for it (``data_path_for``; never another consumer's PII
        file); ``refetch`` downloads every file to check the store's own bytes, and keeps none of them."""
        prefix = self.release_prefix(project, model, version, release_id)
        shown = self.backend.display(prefix)
        key = f"{prefix}/release.json"
        # the descriptor carries the product's node (what consumers stitch from): bounded like an interface
        sizes = None if self.local else {e.key: e.size for e in self.backend.listing(prefix)}
        if (self._size(key, sizes) or 0) > INTERFACE_LIMIT:
            raise self._descriptor_too_big(key, self._size(key, sizes) or 0, project)
        try:
            raw = self.backend.read(key)
        except OSError as exc:
            raise ArtifactError(f"{self.backend.display(key)}: release descriptor unreadable ({exc}).") from None
        if raw is None:
            raise ArtifactError(f"{self.backend.display(key)}: release descriptor missing; the release is incomplete.")
        if len(raw) > INTERFACE_LIMIT:  # replaced by a bigger one since it was listed
            raise self._descriptor_too_big(key, len(raw), project)
        try:
            descriptor = ReleaseDescriptor.model_validate_json(raw)
        except ValueError as exc:
            first = "; ".join(line.strip() for line in str(exc).splitlines()[:3])[:300]
            raise ArtifactError(f"{self.backend.display(key)}: release descriptor is corrupt ({first}).") from None
        d = descriptor
        said = (d.release_id, d.project, d.model, d.version, d.product)
        if said != (release_id, project, model, version, product_key(project, model, version)):
            raise ArtifactError(
                f"{self.backend.display(key)}: the descriptor says {d.product} release {d.release_id!r}, but it lives "
                f"in {shown}. A release is read only from its own folder; publish again with "
                f"`mesh publish {d.project}`."
            )
        for file in descriptor.files:
            if Path(file.path).name != file.path or file.path.startswith("."):
                raise ArtifactError(
                    f"{self.backend.display(key)}: data file {file.path!r} is not a file of the release folder. "
                    f"Publish again with `mesh publish {d.project}`."
                )
            size = self._size(f"{prefix}/{file.path}", sizes)
            if size != file.bytes:
                raise ArtifactError(
                    f"{self.backend.display(f'{prefix}/{file.path}')}: data file of release {d.release_id} is "
                    f"missing or truncated (expected {file.bytes} bytes). The exchange does not serve partial "
                    f"releases; publish again with `mesh publish {d.project}`."
                )
        folder = self.root / prefix if self.local else None
        release = Release(descriptor, folder, shown, self)
        if verify and folder is not None:
            for file in descriptor.files:
                self._verify(folder / file.path, file.sha256, shown, descriptor)
        if refetch and folder is None:
            for file in descriptor.files:
                self._check_store_bytes(release, file.path)
        return release

    def _descriptor_too_big(self, key: str, size: int, project: str) -> ArtifactError:
        return ArtifactError(
            f"{self.backend.display(key)}: release descriptor is {size:,} bytes, over the limit of {INTERFACE_LIMIT:,} "
            f"(a descriptor and its product's node, without SQL, are far smaller). It is not read: ask {project}'s "
            f"team to publish again (`mesh publish {project}`)."
        )

    def _check_store_bytes(self, release: Release, name: str) -> None:
        """Download one file of a release to a scratch file, compare its SHA-256, delete it."""
        d = release.descriptor
        entry = next(f for f in d.files if f.path == name)
        key = f"{self.release_prefix(d.project, d.model, d.version, d.release_id)}/{name}"
        scratch = ensure_folder(self.tmp_dir, self.anchor) / f".check.{os.getpid()}.{name}"
        try:
            self._fetch(key, scratch)
            if file_sha256(scratch) != entry.sha256.removeprefix("sha256:"):
                raise ArtifactError(
                    f"{self.backend.display(key)}: data file of release {d.release_id} does not match the SHA-256 "
                    "its descriptor records: it was changed after publishing. The exchange does not serve it; "
                    f"publish again with `mesh publish {d.project}`, or pin another release."
                )
        finally:
            scratch.unlink(missing_ok=True)

    def _fetch(self, key: str, dest: Path) -> None:
        try:
            self.backend.fetch(key, dest)
        except (StorageError, FileNotFoundError):
            raise
        except Exception as exc:  # noqa: BLE001 - a connection cut mid-body surfaces from the HTTP layer
            raise StorageError(f"{self.backend.display(key)}: reading failed ({exc}); run again.") from None

    def _size(self, key: str, sizes: dict[str, int] | None) -> int | None:
        if sizes is not None:
            return sizes.get(key)
        path = self.root / key
        return path.stat().st_size if path.is_file() else None

    @staticmethod
    def _verify(path: Path, sha256: str, shown: str, d: ReleaseDescriptor) -> None:
        if file_sha256(path) != sha256.removeprefix("sha256:"):
            raise ArtifactError(
                f"{shown}/{path.name}: data file of release {d.release_id} does not match the SHA-256 "
                "its descriptor records: it was changed after publishing. The exchange does not serve it; "
                f"publish again with `mesh publish {d.project}`, or pin another release."
            )

    def cached(self, release: Release, name: str, *, refetch: bool = False) -> Path:
        """A verified local copy of one file of a release in an object store, named by its SHA-256.

        Fetched on first use into the cache, checked against the descriptor before it takes its name; a
        cached copy is checked again on every use (a changed one is fetched again)."""
        d = release.descriptor
        entry = next(f for f in d.files if f.path == name)
        digest = entry.sha256.removeprefix("sha256:")
        if not all(c in "0123456789abcdef" for c in digest) or len(digest) != 64:
            raise ArtifactError(f"{release.where}/release.json: {name} has no SHA-256 to verify it by.")
        cache = self.root / "objects" / digest[:2]
        path = cache / f"{digest}{Path(name).suffix}"
        if not refetch and path.is_file() and path.stat().st_size == entry.bytes and file_sha256(path) == digest:
            return path
        ensure_folder(cache, self.anchor)
        partial = cache / f".{digest}.{os.getpid()}.partial"
        key = f"{self.release_prefix(d.project, d.model, d.version, d.release_id)}/{name}"
        try:
            self._fetch(key, partial)
            if file_sha256(partial) != digest:
                raise ArtifactError(
                    f"{self.backend.display(key)}: data file of release {d.release_id} does not match the SHA-256 "
                    "its descriptor records: it was changed after publishing. The exchange does not serve it; "
                    f"publish again with `mesh publish {d.project}`, or pin another release."
                )
            os.chmod(partial, 0o444)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        return path

    def release_ids(self, project: str, model: str, version: str | None) -> list[str]:
        """Every complete release of a product, oldest first (an object-store release is complete once its
        descriptor, written last, exists)."""
        if self.local:
            folder = self.releases_dir(project, model, version)
            if not folder.is_dir():
                return []
            return sorted(p.name for p in folder.iterdir() if p.is_dir() and RELEASE_ID.fullmatch(p.name))
        prefix = f"{self.product_prefix(project, model, version)}/releases"
        ids = set()
        for entry in self.backend.listing(prefix):
            parts = entry.key[len(prefix) + 1 :].split("/")
            if len(parts) == 2 and parts[1] == "release.json" and RELEASE_ID.fullmatch(parts[0]):
                ids.add(parts[0])
        return sorted(ids)

    def products_of(self, project: str) -> list[tuple[str, str | None]]:
        """(model, version) of every product of ``project`` the exchange holds anything of."""
        safe_name(project, "project", "exchange products")
        found = set()
        for entry in self.backend.listing(f"products/{project}"):
            parts = entry.key.split("/")
            if len(parts) < 5 or not (parts[3] == "unversioned" or parts[3].startswith("v")):
                continue
            version = None if parts[3] == "unversioned" else parts[3].removeprefix("v")
            try:  # an object no publish could have written (a stray key) is not a product: skipped
                self.product_prefix(project, parts[2], version)
            except ConfigError:
                continue
            found.add((parts[2], version))
        return sorted(found, key=lambda p: (p[0], p[1] or ""))

    def read_pointer(
        self, project: str, model: str, version: str | None, channel: str | None = None
    ) -> tuple[str | None, str | None]:
        """The release id a channel's pointer names (None: no pointer), and its tag for ``switch_current``."""
        return self._pointer_at(self.pointer_key(project, model, version, channel), project)

    def _pointer_at(self, key: str, project: str) -> tuple[str | None, str | None]:
        raw, tag = self.backend.read_tagged(key)
        if raw is None:
            return None, None
        try:
            release_id = loads(raw)["release_id"]
            if not isinstance(release_id, str) or not RELEASE_ID.fullmatch(release_id):
                raise ValueError(f"{str(release_id)[:80]!r} is not a release id")
            return release_id, tag
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(
                f"{self.backend.display(key)}: current-release pointer is corrupt ({exc}). Publish again with "
                f"`mesh publish {project}`."
            ) from None

    def current_id(self, project: str, model: str, version: str | None, channel: str | None = None) -> str | None:
        return self.read_pointer(project, model, version, channel)[0]

    def pointers(self, project: str, model: str, version: str | None) -> dict[str, str]:
        """Pointer name -> release id, for every pointer file of this product: each channel's, and one under a
        name no channel may take (a ``PROD`` written before the names were checked alike) too, since retention
        keeps whatever any pointer names. The listed key is read as it is: no name becomes a path here."""
        prefix = self.product_prefix(project, model, version)
        keys = [(PROD, f"{prefix}/current.json")]
        for entry in self.backend.listing(f"{prefix}/channels"):
            name = entry.key.removeprefix(f"{prefix}/channels/")
            if "/" not in name and name.endswith(".json"):
                keys.append((name.removesuffix(".json"), entry.key))
        out: dict[str, str] = {}
        for name, key in keys:
            release_id = self._pointer_at(key, project)[0]
            if release_id is not None:
                out[name if name not in out else key] = release_id  # a stray channels/prod.json counts too
        return out

    def switch_current(
        self, descriptor: ReleaseDescriptor, channel: str | None = None, expected: str | None | bool = True
    ) -> None:
        """Make a complete release the one a channel's consumers read: one atomic replace of its pointer.

        ``expected``: the pointer's tag when the publish began (None: it had none), so a publish that ran
        beside another never undoes it: Conflict. ``True``: whatever the pointer is now."""
        d = descriptor
        key = self.pointer_key(d.project, d.model, d.version, channel)
        pointer = json.dumps({"release_id": safe_release_id(d.release_id, "release"), "product": d.product}) + "\n"
        if expected is True:
            expected = self.backend.read_tagged(key)[1]
        try:
            self.backend.swap(key, pointer.encode("utf-8"), expected)  # type: ignore[arg-type]
        except Conflict:
            now = self.current_id(d.project, d.model, d.version, channel)
            raise Conflict(
                f"{self.backend.display(key)}: another publish made release {now} of {d.product} current in "
                f"{channel or self.env} while this one ran, so release {d.release_id} was not made current "
                "(nothing of the other publish was overwritten). Build again to publish over it, or check who else "
                f"publishes {d.project}."
            ) from None

    def confirmation_key(self, project: str, model: str, version: str | None, channel: str | None = None) -> str:
        """Where a channel's confirmation of its current release lives: beside the pointer, outside ``channels/``
        (retention reads every file there as a pointer) and outside ``releases/`` (immutable)."""
        channel = check_channel(channel or self.env, "exchange confirmation")
        return f"{self.product_prefix(project, model, version)}/confirmed/{channel}.json"

    def confirm(self, record: Confirmation, descriptor: ReleaseDescriptor, channel: str | None = None) -> None:
        """Record that a rebuild confirmed ``descriptor`` (a channel's current release): one atomic replace of the
        product's confirmation in that channel. The record names the release it confirms, so one left over after
        the pointer moved on confirms nothing (``confirmation``)."""
        d = descriptor
        key = self.confirmation_key(d.project, d.model, d.version, channel)
        self.backend.write(key, (record.model_dump_json() + "\n").encode("utf-8"))

    def confirmation(self, descriptor: ReleaseDescriptor, channel: str | None = None) -> Confirmation | None:
        """The last confirmation of ``descriptor`` in a channel, or None (never confirmed, or the record is of
        another release, or unreadable: a damaged record only loses the "confirmed at", never a release)."""
        d = descriptor
        try:
            raw = self.backend.read(self.confirmation_key(d.project, d.model, d.version, channel))
            record = Confirmation.model_validate_json(raw) if raw and len(raw) < 65536 else None
        except (OSError, ValueError, StorageError):
            return None
        if record is None or record.release_id != d.release_id or record.product != d.product:
            return None
        return record

    def vouches(self, descriptor: ReleaseDescriptor, invocation_id: str | None, channel: str | None = None) -> bool:
        """Whether the build ``invocation_id`` made this release, or confirmed it as a channel's current one."""
        if invocation_id is None:
            return False
        if descriptor.build.invocation_id == invocation_id:
            return True
        confirmed = self.confirmation(descriptor, channel)
        return confirmed is not None and confirmed.invocation_id == invocation_id

    def current(
        self, project: str, model: str, version: str | None, *, verify: bool = True, channel: str | None = None
    ) -> Release | None:
        release_id = self.current_id(project, model, version, channel)
        if release_id is None:
            return None
        return self.load(project, model, version, release_id, verify=verify)

    def baseline(self, project: str, model: str, version: str | None) -> Release | None:
        """The release a new one is compared with (breaking changes): this channel's current, else prod's."""
        for channel in dict.fromkeys([self.env, PROD]):
            release = self.current(project, model, version, verify=False, channel=channel)
            if release is not None:
                return release
        return None

    def resolve(
        self, project: str, model: str, version: str | None, pin: str | None, pinned_by: str = "",
        channels: list[str] | None = None,
    ) -> Release | None:  # fmt: skip
        """The release a consumer reads: its pin if it has one, else the current release of the first of
        ``channels`` (default: this run's) that has one."""
        if pin is None:
            for channel in channels or [self.env]:
                release_id = self.current_id(project, model, version, channel)
                if release_id is not None:
                    release = self.load(project, model, version, release_id)
                    return Release(release.descriptor, release.folder, release.where, self, channel)
            return None
        pin = safe_release_id(pin, pinned_by or "pin")
        if pin not in self.release_ids(project, model, version):
            available = self.release_ids(project, model, version)
            listed = ", ".join(available[-10:]) if available else "none"
            raise ConfigError(
                f"{pinned_by}: pinned release '{pin}' of {product_key(project, model, version)} does not exist. "
                f"Available releases (newest last): {listed}."
            )
        release = self.load(project, model, version, pin)
        return Release(release.descriptor, release.folder, release.where, self, "pin")

    # -- writing releases
    def place(self, scratch: Path, descriptor: ReleaseDescriptor) -> None:
        """Put a complete release (a scratch folder: data files and release.json) in its place, not yet current.

        A folder: one rename. An object store: each data file written once, the descriptor last, so a
        release is complete the moment it can be listed; what a failure left is deleted again."""
        d = descriptor
        prefix = self.release_prefix(d.project, d.model, d.version, d.release_id)
        if self.local:
            releases = open_folder(self.releases_dir(d.project, d.model, d.version), self.anchor)  # no link on the way
            try:
                os.rename(scratch, d.release_id, dst_dir_fd=releases)  # complete, immutable, not yet current
                os.fsync(releases)
            finally:
                os.close(releases)
            return
        written: list[str] = []
        try:
            for file in d.files:
                self.backend.create_file(f"{prefix}/{file.path}", scratch / file.path)
                written.append(f"{prefix}/{file.path}")
            if (scratch / CONTRACT_FILE).is_file():  # its data contract (ODCS), before the descriptor too
                self.backend.create(f"{prefix}/{CONTRACT_FILE}", (scratch / CONTRACT_FILE).read_bytes())
                written.append(f"{prefix}/{CONTRACT_FILE}")
            self.backend.create(f"{prefix}/release.json", (scratch / "release.json").read_bytes())
        except BaseException:
            try:
                self.backend.delete(written)
            except Exception:  # noqa: BLE001 - the store is gone: the next publish sweeps them
                pass
            raise
        shutil.rmtree(scratch, ignore_errors=True)

    def release_server(self, descriptor: ReleaseDescriptor, channel: str | None = None) -> dict[str, Any]:
        """Where a release's shared data file can be read, as an ODCS server (its data contract's); ``channel``:
        the environment it is current in (not said in the contract stored with a release, which promotion
        makes current elsewhere)."""
        d = descriptor
        key = f"{self.release_prefix(d.project, d.model, d.version, d.release_id)}/data.parquet"
        if self.local:
            return local_server(str((self.root / key).resolve()), channel)
        return s3_server(self.backend.display(key), os.environ.get("AWS_ENDPOINT_URL_S3")
                         or os.environ.get("AWS_ENDPOINT_URL"), channel)  # fmt: skip

    def discard(self, descriptor: ReleaseDescriptor) -> None:
        """Delete a release nobody reads (never made current, or expired): descriptor first, so a release
        is never listed with its data gone."""
        d = descriptor
        prefix = self.release_prefix(d.project, d.model, d.version, d.release_id)
        if self.local:
            remove_below(self.root / prefix, self.anchor, tree=True)  # never through a link planted on the way
            return
        keys = [e.key for e in self.backend.listing(prefix)]
        self.backend.delete([k for k in keys if k.endswith("/release.json")])
        self.backend.delete([k for k in keys if not k.endswith("/release.json")])

    def sweep(self, project: str) -> list[str]:
        """Remove what dead publishers of ``project`` left: scratch folders, and in an object store release
        files without a descriptor (and unfinished uploads) over an hour old. Returns the keys removed."""
        if self.local:
            self._sweep_scratch()
            return []
        self._sweep_scratch()
        before = time.time() - ORPHAN_SECONDS
        entries = self.backend.listing(f"products/{project}")
        complete = {e.key.rsplit("/", 1)[0] for e in entries if e.key.endswith("/release.json")}
        doomed = [
            e.key
            for e in entries
            if "/releases/" in e.key and e.key.rsplit("/", 1)[0] not in complete and e.modified < before
        ]
        self.backend.delete(doomed)
        if isinstance(self.backend, S3Backend):
            self.backend.stale_uploads(f"products/{project}", before)
        return doomed

    def _sweep_scratch(self) -> None:
        """Remove scratch folders of publishers that died (their pid is gone)."""
        folder = self.tmp_dir
        if not folder.is_dir():
            return
        for entry in folder.iterdir():
            pid = entry.name.rsplit(".", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid():
                try:
                    os.kill(int(pid), 0)
                except ProcessLookupError:
                    remove_below(entry, self.anchor, tree=True)
                except PermissionError:
                    pass

    # -- the log
    def append_log(self, event: dict[str, Any]) -> None:
        """Append one event: a line of log.jsonl, written whole and synced; in an object store one object
        per event, named by time so a listing reads them in order."""
        at = datetime.now(UTC)
        record = {"at": at.isoformat(), **event}
        if self.env != PROD and "env" not in record:
            record["env"] = self.env
        line = json.dumps(record, sort_keys=True) + "\n"
        if not self.local:
            salt = hashlib.sha256(f"{line}|{os.getpid()}|{time.perf_counter_ns()}".encode()).hexdigest()[:8]
            self.backend.create(f"log/{at:%Y%m%dT%H%M%S%f}Z-{salt}.json", line.encode("utf-8"))
            return
        append_durably(self.log_path, line.encode("utf-8"), below=self.anchor)  # never through a planted link

    def read_log(self) -> Iterator[dict[str, Any]]:
        """Every event of the log; a corrupt entry is an error naming it."""
        if not self.local:
            kept = self.root / "log"  # events are written once: each is fetched once, then read locally
            for entry in self.backend.listing("log"):
                name = entry.key.rsplit("/", 1)[-1]
                local = kept / name if name.endswith(".json") and not name.startswith(".") else None
                raw = local.read_bytes() if local is not None and local.is_file() else self.backend.read(entry.key)
                if local is not None and raw and not local.is_file():
                    write_atomic(local, raw, below=self.anchor)
                try:
                    yield loads(raw or b"")
                except ValueError:
                    raise ArtifactError(
                        f"{self.backend.display(entry.key)}: publication log entry is corrupt. Remove it "
                        "(the releases themselves are intact)."
                    ) from None
            return
        if not self.log_path.is_file():
            return
        with open(self.log_path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    event = loads(line)
                except ValueError:
                    if not line.endswith("\n"):
                        return  # a last line cut by a killed writer: it never completed
                    raise ArtifactError(
                        f"{display_path(self.log_path)}:{number}: publication log entry is corrupt. "
                        "Fix or remove that line (the releases themselves are intact)."
                    ) from None
                yield event


def open_exchange(mesh: Mesh, env: str | None = None) -> Exchange:
    """The mesh's exchange: its folder, or the object store ``exchange.url`` (``MESH_EXCHANGE_URL``) names."""
    url = mesh.exchange_url
    if url:
        if not url.startswith("s3://"):
            raise ConfigError(
                f"exchange url {url!r}: only s3:// URLs (any S3-compatible store) are supported; for a folder "
                "set exchange.path instead."
            )
        cache = mesh.exchange_path  # the local cache: below the mesh root, no link from the root on (.mesh/)
        return Exchange(cache, backend=S3Backend(url), env=env, anchor=mesh.anchor(cache))
    return Exchange(mesh.exchange_path, env=env)
