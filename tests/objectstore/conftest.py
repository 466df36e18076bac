from __future__ import annotations

import pytest

from tests import s3server


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """moto's S3 server on loopback for the session; stopped at its end."""
    if not s3server.available():
        pytest.skip("needs the s3 extra and moto[server]")
    server = s3server.Server(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()
