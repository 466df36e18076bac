"""The object-store unit's shared fixtures: an exchange on the loopback S3 server (``s3``, tests/conftest.py) and
the unit's one producer/consumer pair (tests/store/checkouts.py), for every test file of the unit."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from mesh_tools.store.backends import S3Backend
from mesh_tools.store.exchange import Exchange
from tests import s3server
from tests.store.checkouts import Pair, Store, checkout, mesh, ok


@pytest.fixture
def exchange(s3: s3server.Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Exchange:
    """An exchange on a bucket of its own of the test server, in this process (no dbt, no checkout)."""
    for name, value in {**s3server.CREDENTIALS, "AWS_ENDPOINT_URL": s3.endpoint}.items():
        monkeypatch.setenv(name, value)
    bucket = s3.bucket(f"unit-{uuid.uuid4().hex[:12]}")
    return Exchange(tmp_path / "cache", backend=S3Backend(f"s3://{bucket}/ex"), env="prod")


@pytest.fixture(scope="session")
def pair(s3: s3server.Server, tmp_path_factory: pytest.TempPathFactory) -> Pair:
    """The producer built and published shop into the store; the consumer, elsewhere, built reporting from it."""
    store = Store(s3)
    base = tmp_path_factory.mktemp("machines")
    producer, consumer = checkout(base / "producer", "shop"), checkout(base / "consumer", "reporting")
    ok(mesh(store, producer, "build"))
    ok(mesh(store, consumer, "build"))
    return Pair(store, producer, consumer)
