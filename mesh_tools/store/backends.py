"""Where the exchange's objects live: a local folder, or an S3-compatible object store.

Both hold the same keys (``products/<project>/<model>/<vN>/...``, ``receipts/...``) and offer the
same few operations, each atomic on its own:

- ``create``: write an object that must not exist yet (release files, log events);
- ``swap``: replace a pointer only if it is still the one read (compare-and-swap);
- ``write``: replace an object whole (a consumer's own receipt and lease);
- ``read``, ``listing``, ``delete``, ``fetch``.

On S3 these are conditional requests (``If-None-Match: *``, ``If-Match: <ETag>``); in a folder,
a hard link (which fails when the name exists) and a lock around the pointer's read-compare-replace.
Credentials, endpoint and region come from the standard AWS environment variables and files
(``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ``~/.aws/config`` ...); the tool never writes them.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh_tools.core.errors import ConfigError, StorageError, display_path
from mesh_tools.core.files import copy_into, create_once, open_folder, open_nofollow, remove_below, write_atomic

PART_BYTES = 16 * 2**20  # files larger than this go up in parts (S3's limit for one PUT is 5 GB)


class Conflict(StorageError):
    """Another writer changed the object first (a pointer swapped, a key taken): nothing was overwritten."""


@dataclass(frozen=True)
class Entry:
    key: str
    size: int
    modified: float  # seconds since the epoch
    etag: str | None = None  # the store's tag of the object's bytes (S3: changes whenever they do); None in a folder


class Backend:
    """The operations the exchange needs; keys are relative, '/'-separated, checked by the caller."""

    url: str

    def display(self, key: str = "") -> str:
        raise NotImplementedError

    def read(self, key: str) -> bytes | None:
        return self.read_tagged(key)[0]

    def read_tagged(self, key: str) -> tuple[bytes | None, str | None]:
        """The object and a tag that changes whenever it does (``swap`` compares it)."""
        raise NotImplementedError

    def write(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def create(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def create_file(self, key: str, path: Path) -> None:
        raise NotImplementedError

    def swap(self, key: str, data: bytes, expected: str | None) -> None:
        """Replace ``key`` with ``data`` if its tag is still ``expected`` (None: if it does not exist)."""
        raise NotImplementedError

    def listing(self, prefix: str) -> list[Entry]:
        raise NotImplementedError

    def delete(self, keys: list[str]) -> None:
        raise NotImplementedError

    def fetch(self, key: str, dest: Path) -> None:
        raise NotImplementedError

    def writable(self) -> bool:
        return True


def _tag(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FolderBackend(Backend):
    """The exchange as a folder (the default): on this machine, or on a share every domain mounts.

    Every write and delete reaches its file from the root one folder at a time without following a
    symbolic link (core/files.py ``open_folder``): the exchange is shared by every domain, and a link
    planted at one of its folders (``receipts -> /outside``) must not carry a write out of it. The root
    itself may be a link (a mounted share often is).
    """

    def __init__(self, root: Path):
        self.root = root
        self.url = str(root)

    def path(self, key: str) -> Path:
        return self.root / key

    def display(self, key: str = "") -> str:
        return display_path(self.root / key) if key else display_path(self.root)

    def read_tagged(self, key: str) -> tuple[bytes | None, str | None]:
        try:
            data = self.path(key).read_bytes()
        except FileNotFoundError:
            return None, None
        return data, _tag(data)

    def write(self, key: str, data: bytes) -> None:
        write_atomic(self.path(key), data, below=self.root)

    def create(self, key: str, data: bytes) -> None:
        def fill(fd: int) -> None:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())

        self._create(key, fill)

    def create_file(self, key: str, path: Path) -> None:
        self._create(key, lambda fd: copy_into(fd, path))

    def _create(self, key: str, fill: Callable[[int], None]) -> None:
        try:  # a new scratch file (never one planted at its name), linked in under a name that must be free
            create_once(self.path(key), fill, below=self.root)
        except FileExistsError:
            raise Conflict(f"{self.display(key)}: already exists; it is written once and never replaced.") from None

    @contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        fd = open_folder(self.path(key).parent, self.root)  # the folder is the lock: nothing is left behind in it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def swap(self, key: str, data: bytes, expected: str | None) -> None:
        with self._locked(key):
            _, tag = self.read_tagged(key)
            if tag != expected:
                raise Conflict(f"{self.display(key)}: changed by another writer since it was read.")
            self.write(key, data)

    def listing(self, prefix: str) -> list[Entry]:
        base = self.path(prefix)
        if not base.is_dir():
            return []
        out = []
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                stat = path.stat()
                out.append(Entry(path.relative_to(self.root).as_posix(), stat.st_size, stat.st_mtime))
        return out

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            remove_below(self.path(key), self.root)

    def fetch(self, key: str, dest: Path) -> None:
        copy_into(open_nofollow(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), self.path(key))

    def writable(self) -> bool:
        probe = self.root
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        return os.access(probe, os.W_OK)


class S3Backend(Backend):
    """The exchange in an S3-compatible object store: ``s3://bucket/prefix``.

    Every request goes through boto3 with its standard configuration chain; failures to reach the
    store, a missing bucket and refused credentials become one StorageError naming the URL.
    """

    def __init__(self, url: str):
        from urllib.parse import urlparse

        parsed = urlparse(url)
        segments = [s for s in parsed.path.split("/") if s]
        problem = None
        if parsed.scheme != "s3" or not parsed.netloc:
            problem = "it is not s3://bucket/prefix"
        elif not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", parsed.netloc):
            problem = f"{parsed.netloc!r} is not a bucket name (3-63 lower-case letters, digits, '.', '-')"
        elif parsed.query or parsed.fragment or parsed.params or "?" in url or "#" in url:
            problem = "a query or fragment is not part of an exchange's place"
        elif any(s in (".", "..") or not re.fullmatch(r"[A-Za-z0-9._=-]+", s) for s in segments):
            problem = "its prefix may hold only letters, digits, '.', '_', '=', '-' between slashes, no '.' or '..'"
        if problem:
            raise ConfigError(f"exchange url {url[:200]!r}: {problem}. Fix exchange.url (or MESH_EXCHANGE_URL).")
        self.bucket = parsed.netloc
        self.prefix = "/".join(segments)
        self.url = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError:
                raise StorageError(
                    f"the exchange {self.url} is an object store, and boto3 is not installed: "
                    "`pip install 'mesh-tools[s3]'`."
                ) from None
            # a store that accepts and never answers fails in about a minute, not four
            config = Config(
                retries={"total_max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=30,
                s3={"addressing_style": os.environ.get("MESH_S3_ADDRESSING", "auto")},
            )  # fmt: skip
            self._client = boto3.session.Session().client("s3", config=config)
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def display(self, key: str = "") -> str:
        return f"{self.url}/{key}" if key else self.url

    def _call(self, what: str, key: str, fn: Any, **kwargs: Any) -> Any:
        """One request; every failure but the ones the caller handles becomes a StorageError."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                raise Conflict(f"{self.display(key)}: changed by another writer (the store answered {code}).") from None
            if code in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(self.display(key)) from None
            hint = {
                "NoSuchBucket": "the bucket does not exist: create it, or fix exchange.url",
                "AccessDenied": "access denied: check the credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID) and policy",
                "InvalidAccessKeyId": "the access key is not known to the store: check AWS_ACCESS_KEY_ID",
                "SignatureDoesNotMatch": "the secret key is wrong: check AWS_SECRET_ACCESS_KEY",
            }.get(code, f"the store refused it ({code or status})")
            raise StorageError(f"{self.display(key)}: {what} failed: {hint}.") from None
        except BotoCoreError as exc:
            from botocore.exceptions import NoCredentialsError, PartialCredentialsError

            if isinstance(exc, NoCredentialsError | PartialCredentialsError):
                raise StorageError(
                    f"{self.display(key)}: {what} failed: no AWS credentials found ({exc}). Set AWS_PROFILE, or "
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run where a role provides them."
                ) from None
            raise StorageError(
                f"{self.display(key)}: {what} failed: the object store cannot be reached ({exc}). Check the "
                "endpoint (AWS_ENDPOINT_URL) and the network, then run again; nothing was made current."
            ) from None

    def read_tagged(self, key: str) -> tuple[bytes | None, str | None]:
        try:
            answer = self._call("reading", key, self.client.get_object, Key=self._key(key))
        except FileNotFoundError:
            return None, None
        return answer["Body"].read(), answer["ETag"]

    def write(self, key: str, data: bytes) -> None:
        self._call("writing", key, self.client.put_object, Key=self._key(key), Body=data)

    def create(self, key: str, data: bytes) -> None:
        self._call("writing", key, self.client.put_object, Key=self._key(key), Body=data, IfNoneMatch="*")

    def create_file(self, key: str, path: Path) -> None:
        """Upload a file once: one PUT, or a multipart upload completed only if the key is still free
        (an upload that fails or is killed is never visible; a failed one is aborted)."""
        size = path.stat().st_size
        if size <= PART_BYTES:
            self.create(key, path.read_bytes())
            return
        full = self._key(key)
        upload = self._call("starting an upload", key, self.client.create_multipart_upload, Key=full)["UploadId"]
        parts = []
        try:
            with open(path, "rb") as handle:
                for number, block in enumerate(iter(lambda: handle.read(PART_BYTES), b""), start=1):
                    answer = self._call("uploading", key, self.client.upload_part, Key=full, UploadId=upload,
                                        PartNumber=number, Body=block)  # fmt: skip
                    parts.append({"ETag": answer["ETag"], "PartNumber": number})
            self._call("completing an upload", key, self.client.complete_multipart_upload, Key=full,
                       UploadId=upload, MultipartUpload={"Parts": parts}, IfNoneMatch="*")  # fmt: skip
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload)
            except Exception:  # noqa: BLE001 - unreachable store: the next publish sweeps it
                pass
            raise

    def swap(self, key: str, data: bytes, expected: str | None) -> None:
        condition = {"IfMatch": expected} if expected is not None else {"IfNoneMatch": "*"}
        self._call("switching", key, self.client.put_object, Key=self._key(key), Body=data, **condition)

    def listing(self, prefix: str) -> list[Entry]:
        full = self._key(prefix).rstrip("/") + "/"
        out, token = [], None
        while True:
            kwargs = {"Prefix": full, **({"ContinuationToken": token} if token else {})}
            answer = self._call("listing", prefix, self.client.list_objects_v2, **kwargs)
            for item in answer.get("Contents", []):
                key = item["Key"][len(self._key("")) :] if self.prefix else item["Key"]
                out.append(
                    Entry(key.lstrip("/"), int(item["Size"]), item["LastModified"].timestamp(), item.get("ETag"))
                )
            if not answer.get("IsTruncated"):
                return sorted(out, key=lambda e: e.key)
            token = answer["NextContinuationToken"]

    def stale_uploads(self, prefix: str, before: float) -> None:
        """Abort multipart uploads under ``prefix`` started before ``before`` (a killed publisher's)."""
        full = self._key(prefix).rstrip("/") + "/"
        answer = self._call("listing uploads", prefix, self.client.list_multipart_uploads, Prefix=full)
        for upload in answer.get("Uploads", []):
            if upload["Initiated"].timestamp() < before:
                self._call("aborting an upload", prefix, self.client.abort_multipart_upload, Key=upload["Key"],
                           UploadId=upload["UploadId"])  # fmt: skip

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            chunk = [{"Key": self._key(k)} for k in keys[start : start + 1000]]
            if chunk:
                self._call("deleting", keys[start], self.client.delete_objects, Delete={"Objects": chunk})

    def fetch(self, key: str, dest: Path) -> None:
        answer = self._call("reading", key, self.client.get_object, Key=self._key(key))
        with os.fdopen(open_nofollow(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "wb") as handle:
            for block in answer["Body"].iter_chunks(2**20):
                handle.write(block)
