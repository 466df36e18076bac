"""The PostgreSQL unit's warehouse as its tests read it: each domain's login role, and a product's current release."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests import pgserver

DOMAINS = ("customers", "sales", "marketing", "finance")
PASSWORDS = {d: f"{d}-pw-{os.getpid()}" for d in DOMAINS}


def as_role(pg: pgserver.Server, role: str, sql: str) -> tuple[str, object]:
    """Run one query as a domain's role: ("allowed", first row) or ("denied", SQLSTATE and message)."""
    import psycopg2

    con = pg.connect(user=role, password=PASSWORDS[role], dbname="mesh")
    con.autocommit = True
    try:
        with con.cursor() as cur:
            cur.execute(sql)
            return "allowed", cur.fetchone()
    except psycopg2.Error as exc:
        return "denied", f"{exc.pgcode} {str(exc).splitlines()[0]}"
    finally:
        con.close()


def current(root: Path, product: str) -> dict:
    project, model, *version = product.split(".")
    folder = root / "exchange/products" / project / model / (version[0] if version else "unversioned")
    release_id = json.loads((folder / "current.json").read_text())["release_id"]
    return json.loads((folder / "releases" / release_id / "release.json").read_text())
