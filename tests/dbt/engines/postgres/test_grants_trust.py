"""Trust on the shared warehouse: role names, reserved roles, grants to PUBLIC, revocation, PII in releases.

Uses the unit's server and warehouse build (tests/dbt/engines/postgres/conftest.py). A test that changes the shared
build puts it back as it found it: the unit's other files use it after this one.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from mesh_tools.core.mesh import load_mesh
from mesh_tools.dbt.engines.postgres_grants import privilege_sql
from mesh_tools.dbt.engines.postgres_publish import Export, publish_statements
from mesh_tools.exchange.access import warehouse_roles
from tests import pgserver
from tests.dbt.engines.postgres.warehouse import as_role, current
from tests.helpers import Built, copy_demo, mesh_env, run_command, run_mesh

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def mesh_with(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`mesh ...` with the environment the mesh's own tests run with, plus ``env``."""
    return run_command(["mesh", *args], root, {**mesh_env(), **env})


def psql(pg: pgserver.Server, sql: str, dbname: str) -> subprocess.CompletedProcess[str]:
    """Pipe SQL into psql as the administrator does: every statement runs, an error does not stop the rest."""
    env = {**os.environ, "PGPASSWORD": pgserver.SUPERUSER_PASSWORD}
    command = ["psql", "-h", pg.host, "-p", str(pg.port), "-U", "postgres", "-d", dbname, "-X", "-f", "-"]
    return subprocess.run(command, input=sql, env=env, capture_output=True, text=True, timeout=60)


def query(pg: pgserver.Server, sql: str, params: tuple = (), dbname: str = "mesh") -> list[tuple]:
    con = pg.connect(dbname=dbname)
    try:
        with con.cursor() as cur:
            cur.execute(sql, params or None)
            return cur.fetchall()
    finally:
        con.close()


def test_the_bootstrap_refuses_a_hostile_role_name_and_its_sql_cannot_be_broken_out_of(
    pg: pgserver.Server, tmp_path: Path
) -> None:
    """A role name with `$$` once ended the bootstrap's dollar quote: piped into psql, it made another domain's
    role a superuser. Such a name is refused with the profile that names it; and the SQL the mesh writes
    around a name, fed hostile names directly, creates roles with exactly those names and nothing else."""
    from mesh_tools.dbt.engines.postgres_grants import create_role_sql

    root = copy_demo(tmp_path / "mesh")
    pg.admin("create database w2_bootstrap")
    pg.admin("create role w2_victim login")
    hostile = "x$$; alter role w2_victim superuser; do $$ begin"
    # and a database name that would end the comment line it is shown in
    env = {"MESH_PG_DATABASE": "w2\nalter role w2_victim superuser;", "MESH_PG_USER_SALES": hostile}
    refused = mesh_with(root, env, "grants", "--bootstrap", "--target", "postgres")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stdout == ""  # nothing an administrator could pipe anywhere
    assert (
        f"profiles.yml, target postgres: sales names the role {hostile!r}, which is not a plain identifier (letters, "
        "digits and underscores, not starting with a digit, at most 63 bytes)" in refused.stderr
    )
    assert "the database 'w2\\nalter role w2_victim superuser;' is not a plain name" in refused.stderr
    assert "Traceback" not in refused.stderr
    # the bootstrap of the untouched mesh runs through psql without an error
    bootstrap = mesh_with(root, {"MESH_PG_DATABASE": "w2_bootstrap"}, "grants", "--bootstrap", "--target", "postgres")
    assert bootstrap.returncode == 0, bootstrap.stderr
    piped = psql(pg, bootstrap.stdout, "w2_bootstrap")
    assert piped.returncode == 0 and "ERROR" not in piped.stderr, piped.stderr
    roles = {r[0] for r in query(pg, "select rolname from pg_roles", dbname="w2_bootstrap")}
    assert {"customers", "finance", "marketing", "sales"} <= roles
    # the SQL around a name, with the names a missing check would let through
    names = [
        hostile,
        "x$mesh$; alter role w2_victim superuser; do $mesh$ begin",
        "x'; alter role w2_victim superuser; --",
        'x"; alter role w2_victim superuser; --',
        "x\\'; alter role w2_victim superuser; --",
    ]
    piped = psql(pg, "\n".join(create_role_sql(n) + ";" for n in names), "w2_bootstrap")
    assert piped.returncode == 0 and "ERROR" not in piped.stderr, piped.stderr
    try:
        assert query(pg, "select rolsuper from pg_roles where rolname = 'w2_victim'", dbname="w2_bootstrap") == [
            (False,)
        ]
        made = {r[0] for r in query(pg, "select rolname from pg_roles where rolname like 'x%'", dbname="w2_bootstrap")}
        assert made == set(names)  # each created as the very name, and harmless
    finally:
        con = pg.connect()
        con.autocommit = True
        with con.cursor() as cur:
            for name in names:
                cur.execute("select format('drop role if exists %%I', %s)", (name,))
                cur.execute(cur.fetchone()[0])
        con.close()


def test_a_role_that_is_not_one_domains_own_is_refused_with_the_profile_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PUBLIC in any case, the pg_ prefix, no user, a name that is no plain identifier, one role for two
    domains: each refused as a consumer (never in the roles granted to), located at profiles.yml and target."""
    from mesh_tools.dbt.engines.postgres import prefix_problem
    from mesh_tools.exchange.access import role_problem

    cases = {
        "public": "names the role 'public': PUBLIC is every role of the database",
        "PUBLIC": "names the role 'PUBLIC': PUBLIC is every role of the database",
        "Public": "names the role 'Public': PUBLIC is every role of the database",
        "pg_read_all_data": "names the role 'pg_read_all_data': the pg_ prefix is PostgreSQL's own",
        "PG_Monitor": "names the role 'PG_Monitor': the pg_ prefix is PostgreSQL's own",
        "none": "names the role 'none': a name PostgreSQL reserves",
        "current_user": "names the role 'current_user': a name PostgreSQL reserves",
        "": "names no user (login role)",
        "  ": "names no user (login role)",
        "fin-ance": "names the role 'fin-ance', which is not a plain identifier",
        "9finance": "which is not a plain identifier",
        "f" * 64: "which is not a plain identifier",
        "finance\n": "which is not a plain identifier",
        "x$$y": "which is not a plain identifier",
    }
    for role, expected in cases.items():
        assert expected in (role_problem(role) or ""), role
    assert role_problem("finance") is None and role_problem("Finance_2") is None
    # through the profiles, located at the file and target that name the role
    root = copy_demo(tmp_path / "mesh")
    mesh = load_mesh(root)
    monkeypatch.setenv("MESH_PG_USER_FINANCE", "public")
    monkeypatch.setenv("MESH_PG_USER_SALES", "Marketing")  # one role for two domains: either reads what both may
    roles = warehouse_roles(mesh, "postgres", None)
    assert dict(roles) == {"customers": "customers"}, roles
    assert set(roles.refused) == {"finance", "sales", "marketing"}
    assert re.match(r"\S*projects/finance/profiles\.yml, target postgres: finance names the role 'public'",
                    roles.refused["finance"]), roles.refused  # fmt: skip
    assert "sales names the role 'Marketing', which marketing (" in roles.refused["sales"], roles.refused
    assert "marketing names the role 'marketing', which sales (" in roles.refused["marketing"], roles.refused
    # the last line: no grant statement is ever made for PUBLIC or a reserved role
    for grantee in ("PUBLIC", "public", "Public", "pg_monitor", "x$$y"):
        with pytest.raises(ValueError):
            privilege_sql(("s_products", "v", None, "SELECT", grantee))
    assert privilege_sql(("s_products", "v", None, "SELECT", "PUBLIC"), grant=False) == (
        'revoke select on "s_products"."v" from public'
    )
    # a target schema the mesh would make schema names from is checked the same way
    problem = prefix_problem("fin'ance", root / "projects/finance/profiles.yml", "postgres")
    assert problem and 'target postgres: schema "fin\'ance" is not a plain identifier' in problem
    assert prefix_problem("finance", root / "projects/finance/profiles.yml", "postgres") is None


def _grants_to_public(pg: pgserver.Server, schemas: tuple[str, ...]) -> list[tuple]:
    """Every privilege PUBLIC holds on the schemas and their relations."""
    return query(
        pg,
        "select n.nspname, null::text, a.privilege_type from pg_namespace n cross join lateral aclexplode(n.nspacl) a "
        "where a.grantee = 0 and n.nspname = any(%s) union all "
        "select n.nspname, c.relname, a.privilege_type from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "cross join lateral aclexplode(c.relacl) a where a.grantee = 0 and n.nspname = any(%s)",
        (list(schemas), list(schemas)),
    )


def test_a_consumer_whose_role_is_public_or_a_superuser_is_granted_nothing(pg_mesh: Built, pg: pgserver.Server) -> None:
    """marketing reads customers' PII in clear. Its profile naming `public` once made customers grant the clear
    table to PUBLIC: sales, whom no policy names, read every e-mail. Now marketing is refused, said, and nothing
    is granted to PUBLIC; a superuser consumer is refused the same way."""
    assert pg_mesh.result.returncode == 0, pg_mesh.output
    root = pg_mesh.root
    schemas = ("customers_releases", "customers_products")
    public = {"MESH_PG_USER_MARKETING": "public"}
    try:
        dry = mesh_with(root, public, "grants", "customers", "--target", "postgres", "--dry-run")
        assert dry.returncode == 2, dry.stdout + dry.stderr
        assert "  problem: " in dry.stdout and "marketing names the role 'public': PUBLIC is every role" in dry.stdout
        assert not re.search(r"^\s*grant .* to (\"?public\"?);$", dry.stdout, re.M | re.I), dry.stdout
        published = mesh_with(root, public, "publish", "customers", "--target", "postgres")
        assert published.returncode == 0, published.stdout + published.stderr
        assert "customers: warning: " in published.stdout and "marketing names the role 'public'" in published.stdout
        assert _grants_to_public(pg, schemas) == []
        release = current(root, "customers.dim_customers")["warehouse"]
        assert release["clear_table"] is None  # its only reader in clear is refused: no PII kept in clear
        for sql in ("select count(email) from customers_products.dim_customers__pii",
                    f'select count(*) from customers_releases."{release["table"]}"',
                    "select count(*) from customers_products.dim_customers"):  # fmt: skip
            assert as_role(pg, "sales", sql)[0] == "denied", sql
        # a superuser reads everything whatever it is granted: refused as a consumer, granted nothing
        pg.admin("alter role finance superuser")
        try:
            su = run_mesh("grants", "customers", "--target", "postgres", "--dry-run", cwd=root)
            assert su.returncode == 2, su.stdout + su.stderr
            assert "finance names the role 'finance', a superuser: it reads everything on the warehouse" in su.stdout
            assert 'grant select on "customers_products"."dim_customers" to "finance"' not in su.stdout
        finally:
            pg.admin("alter role finance nosuperuser")
    finally:  # as the unit's other tests expect it: marketing reads the PII in clear again
        again = run_mesh("publish", "customers", "--target", "postgres", cwd=root)
        assert again.returncode == 0, again.stdout + again.stderr
    assert as_role(pg, "marketing", "select count(email) from customers_products.dim_customers__pii")[1][0] > 0
    assert _grants_to_public(pg, schemas) == []


def test_what_the_policy_no_longer_allows_is_revoked_at_the_next_mesh_grants(
    pg_mesh: Built, pg: pgserver.Server
) -> None:
    """A grant to PUBLIC typed by hand is drift, reported and revoked; so are the grants of a consumer that
    dropped its dependency. Both come back as the policy says once it says so again."""
    assert pg_mesh.result.returncode == 0, pg_mesh.output
    root = pg_mesh.root
    clear = current(root, "customers.dim_customers")["warehouse"]["clear_table"]
    assert clear
    pg.admin(f'set role customers; grant usage on schema customers_releases to public; '
             f'grant select on customers_releases."{clear}" to public', dbname="mesh")  # fmt: skip
    leak = f'select count(email) from customers_releases."{clear}"'
    assert as_role(pg, "sales", leak)[0] == "allowed"  # what a hand grant to PUBLIC does
    deps = root / "projects/finance/dependencies.yml"
    original = deps.read_text()
    assert "  - name: customers\n" in original
    read = "select count(*) from customers_products.dim_customers"
    assert as_role(pg, "finance", read)[0] == "allowed"
    deps.write_text(original.replace("  - name: customers\n", ""))
    try:
        fix = run_mesh("grants", "customers", "--target", "postgres", cwd=root)
        assert fix.returncode == 0, fix.stdout + fix.stderr
        for revoked in (f"SELECT on customers_releases.{clear} to PUBLIC", "USAGE on schema customers_releases to PUBLIC",
                        "SELECT on customers_products.dim_customers to finance",
                        "USAGE on schema customers_products to finance"):  # fmt: skip
            assert f"revoked: {revoked}" in fix.stdout, fix.stdout
        assert as_role(pg, "sales", leak)[0] == "denied"
        assert as_role(pg, "marketing", leak)[0] == "allowed"  # the policy's reader keeps it
        assert as_role(pg, "finance", read)[0] == "denied"
        assert _grants_to_public(pg, ("customers_releases", "customers_products")) == []
    finally:
        deps.write_text(original)
        back = run_mesh("grants", "customers", "--target", "postgres", cwd=root)
        assert back.returncode == 0, back.stdout + back.stderr
    assert as_role(pg, "finance", read)[0] == "allowed"


def test_a_release_masks_pii_in_any_case_and_keeps_no_clear_table_without_a_reader(pg: pgserver.Server) -> None:
    """The publish's own statements, run on the server: PII declared `EMAIL`/`phone` masks the columns `email`
    and `Phone`; with no reader in clear no `__pii` table or view is made. The model's name holds the dollar
    tag the mesh's blocks use: every block still ends where it should."""
    pg.admin("create database w2_release")
    con = pg.connect(dbname="w2_release")
    with con.cursor() as cur:
        cur.execute('create schema src; create table src.people (id int, email text, "Phone" text); '
                    "insert into src.people select i, 'p' || i || '@example.com', '+49' || i "
                    "from generate_series(1, 5) i")  # fmt: skip
    con.commit()
    model = "odd$mesh$name"

    def publish(release_id: str, readers: tuple[str, ...]) -> Export:
        export = Export(relation='"src"."people"', prefix="w2", model=model, version=None, release_id=release_id,
                        pii=("EMAIL", "phone"), readers=readers)  # fmt: skip
        with con.cursor() as cur:
            for sql in publish_statements([export], [f"w2.{model}"]):
                cur.execute(sql)
        con.commit()
        return export

    def one(sql: str) -> tuple:
        with con.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()

    try:
        masked = publish("r20260101T000000000000Z-aaaaaa", ())
        assert masked.clear_table is None
        table = f'w2_releases."{masked.table}"'
        assert one(f'select count(*), count(id), count(email), count("Phone") from {table}') == (5, 5, 0, 0)
        assert one(f'select count(*), count(email) from w2_products."{model}"') == (5, 0)
        assert one("select count(*) from pg_class where relname like '%\\_\\_pii'") == (0,)
        clear = publish("r20260101T000000000001Z-bbbbbb", ("marketing",))
        assert clear.clear_table
        assert one(f'select count(email), count("Phone") from w2_releases."{clear.clear_table}"') == (5, 5)
        assert one(f'select count(email) from w2_releases."{clear.table}"') == (0,)
        assert one(f'select count(email) from w2_products."{model}__pii"') == (5,)
    finally:
        con.close()
