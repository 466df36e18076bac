"""Whether a current release's stored bytes are still those its descriptor records, as `mesh status`,
`mesh health` and the docs report it: checked the way consumers check them (SHA-256), not on every look.

A folder exchange hashes its files (cheap: they are local). An object store would have to download
them: each file is downloaded once to a scratch file, hashed and deleted, and the store's ETag of
the bytes found good is remembered in the local cache (``verified.json``); while the store shows
the same ETag and size, those bytes are known good without a download. Downloads are bounded per
command by ``MESH_VERIFY_MB`` (default 256; 0 downloads nothing): a file left unchecked makes the
release "unverified", said as such, never "healthy" by default. A file whose bytes differ is an
ArtifactError, as it is for a consumer.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh_tools.core.errors import ArtifactError
from mesh_tools.core.files import ensure_folder, file_sha256, write_atomic
from mesh_tools.core.jsonfile import loads
from mesh_tools.store.exchange import Exchange, Release

MEMO_FILE = "verified.json"
DEFAULT_VERIFY_MB = 256
_MEMO_LIMIT = 20_000  # entries kept (the newest): far more than the current releases of any mesh


def verify_budget() -> int:
    """Bytes a command may download to check releases: ``MESH_VERIFY_MB`` (0: none), else DEFAULT_VERIFY_MB."""
    try:
        value = float(os.environ.get("MESH_VERIFY_MB", DEFAULT_VERIFY_MB))
    except ValueError:
        value = DEFAULT_VERIFY_MB
    return int(max(value, 0) * 2**20)


@dataclass(frozen=True)
class Checked:
    """A current release and how far its bytes were checked."""

    release: Release
    verified: bool  # every data file's SHA-256 matched (now, or earlier for the same stored bytes)
    unverified: str | None = None  # why not, when not


@dataclass
class Verifier:
    """Checks current releases for one command, within one download budget."""

    exchange: Exchange
    budget: int = field(default_factory=verify_budget)
    _memo: dict[str, Any] | None = None

    def current(self, project: str, model: str, version: str | None) -> Checked | None:
        """The product's current release in this channel, checked; None when it has none.

        ArtifactError when it cannot be read or its bytes are not the recorded ones (as consumers find)."""
        exchange = self.exchange
        release = exchange.current(project, model, version, verify=exchange.local)
        if release is None:
            return None
        if exchange.local:
            return Checked(release, True)
        return self._check_store(release)

    # -- an object store
    def _check_store(self, release: Release) -> Checked:
        d = release.descriptor
        prefix = self.exchange.release_prefix(d.project, d.model, d.version, d.release_id)
        listed = {e.key: e for e in self.exchange.backend.listing(prefix)}
        skipped: list[str] = []
        for file in d.files:
            key = f"{prefix}/{file.path}"
            entry = listed.get(key)
            digest = file.sha256.removeprefix("sha256:")
            memo_key = f"{self.exchange.url}/{key}"
            seen = {"etag": entry.etag, "bytes": entry.size, "sha256": digest} if entry is not None else None
            if seen is not None and seen["etag"] and self.memo.get(memo_key) == seen:
                continue  # the very bytes found good before
            if file.bytes > self.budget:
                skipped.append(f"{file.path} ({_size(file.bytes)})")
                continue
            self.budget -= file.bytes
            self._download_and_compare(release, key, digest)
            if seen is not None and seen["etag"]:
                self._remember(memo_key, seen)
        if skipped:
            why = (
                f"SHA-256 not checked for {', '.join(skipped)}: more than this command downloads to check "
                "(MESH_VERIFY_MB); sizes match, and consumers verify the bytes when they read them"
            )
            return Checked(release, False, why)
        return Checked(release, True)

    def _download_and_compare(self, release: Release, key: str, digest: str) -> None:
        d = release.descriptor
        folder = ensure_folder(self.exchange.tmp_dir, self.exchange.anchor)  # no link on the way to it
        scratch = folder / f".verify.{os.getpid()}.{Path(key).name}"
        try:
            self.exchange.backend.fetch(key, scratch)
            if file_sha256(scratch) != digest:
                raise ArtifactError(
                    f"{self.exchange.backend.display(key)}: data file of release {d.release_id} does not match the "
                    "SHA-256 its descriptor records: it was changed after publishing, and consumers refuse it. "
                    f"Publish again with `mesh publish {d.project}`, or pin another release."
                )
        finally:
            scratch.unlink(missing_ok=True)  # nothing of the checked bytes is kept (PII files included)

    # -- what was found good before
    @property
    def memo_path(self) -> Path:
        return self.exchange.root / MEMO_FILE

    @property
    def memo(self) -> dict[str, Any]:
        if self._memo is None:
            try:
                data = loads(self.memo_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = {}  # none yet, or unreadable: everything is checked again
            self._memo = data if isinstance(data, dict) else {}
        return self._memo

    def _remember(self, key: str, value: dict[str, Any]) -> None:
        memo = self.memo
        memo.pop(key, None)
        memo[key] = value
        for old in list(memo)[: max(0, len(memo) - _MEMO_LIMIT)]:
            del memo[old]
        try:
            write_atomic(self.memo_path, json.dumps(memo, sort_keys=False), below=self.exchange.anchor)
        except OSError:
            pass  # a read-only cache: the next command checks again, nothing is wrong


def _size(count: int) -> str:
    return f"{count / 2**20:,.1f} MB" if count >= 2**20 else f"{max(1, round(count / 1024)):,} KB"
