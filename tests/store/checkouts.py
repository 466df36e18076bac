"""Two checkouts sharing one bucket of the loopback S3 server: the producer's holds shop, the consumer's reporting.

tests/store/conftest.py builds the unit's one pair (``pair``); these are the helpers its tests read it with.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import duckdb

from tests import s3server
from tests.helpers import FIXTURES, copy_tree, mesh_env, run_command

PREFIX = "acme-mesh"
V2 = "products/shop/orders/v2"


class Store:
    """One bucket of the test server, as the mesh sees it (``env``) and as the test reads it (``client``)."""

    def __init__(self, server: s3server.Server, endpoint: str | None = None):
        self.server = server
        self.bucket = server.bucket(f"mesh-{uuid.uuid4().hex[:12]}")
        self.endpoint = endpoint or server.endpoint
        self.url = f"s3://{self.bucket}/{PREFIX}"
        self.client = server.client()

    def env(self, **extra: str) -> dict[str, str]:
        return {**mesh_env(), **s3server.CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint,
                "MESH_EXCHANGE_URL": self.url, **extra}  # fmt: skip

    def keys(self, under: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{PREFIX}/{under}")
        return sorted(o["Key"][len(PREFIX) + 1 :] for page in pages for o in page.get("Contents", []))

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=f"{PREFIX}/{key}")["Body"].read()

    def json(self, key: str) -> dict:
        return json.loads(self.read(key))

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=f"{PREFIX}/{key}", Body=data)

    def current(self, product: str = V2, channel: str | None = None) -> str:
        name = "current.json" if channel is None else f"channels/{channel}.json"
        return self.json(f"{product}/{name}")["release_id"]

    def releases(self, product: str = V2) -> list[str]:
        return sorted({k.split("/")[5] for k in self.keys(f"{product}/releases/") if k.endswith("/release.json")})


def mesh(store: Store, cwd: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return run_command(["mesh", *args], cwd, store.env(**extra))


def checkout(parent: Path, *projects: str) -> Path:
    """A checkout holding only ``projects`` of plain_mesh (no mesh.yml: discovered)."""
    parent.mkdir(parents=True)
    for project in projects:
        shutil.copytree(FIXTURES / "plain_mesh" / project, parent / project)
    return parent


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout


class Pair:
    def __init__(self, store: Store, producer: Path, consumer: Path):
        self.store, self.producer, self.consumer = store, producer, consumer


def own_pair(pair: Pair, s3: s3server.Server, tmp_path: Path, endpoint: str | None = None) -> Pair:
    """Copies of both built checkouts on a bucket of their own, holding one publish of shop."""
    store = Store(s3, endpoint)
    producer = copy_tree(pair.producer, tmp_path / "producer")
    consumer = copy_tree(pair.consumer, tmp_path / "consumer")
    shutil.rmtree(consumer / ".mesh", ignore_errors=True)  # nothing of the other bucket cached
    ok(mesh(store, producer, "publish", "shop"))
    return Pair(store, producer, consumer)


def duck(path: Path, sql: str) -> object:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()[0][0]
    finally:
        con.close()
