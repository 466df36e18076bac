"""State-aware `mesh build` (issue 16): only what changed runs, and the products stay those of a full build.

The first test applies one sequence of changes to two copies of a tiny mesh: copy A is built
state-aware (the default) after every step, and must run only what the change reached; copy B gets
the same changes and is built with `--full` once at the end: every product's current release must
then hold the same rows in both. tests/state/test_state_random.py compares A and B after every step of
random sequences, tests/state/test_state_trust.py what a state-aware build cannot fingerprint (hand runs
included).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import duckdb

from tests.helpers import copy_fixture, mesh_env, run_mesh

PRODUCTS = [("shop", "orders"), ("shop", "refunds"), ("report", "revenue"), ("report", "refund_totals")]


def _start(root: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mesh_tools.cli", "build", "--jobs", "2", *args],
        cwd=root, env=mesh_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _finish(process: subprocess.Popen[str]) -> str:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]
    return output


def _build_a(a: Path) -> str:
    """A state-aware, with --explain; its output."""
    done = run_mesh("build", "--explain", cwd=a)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    return done.stdout + done.stderr


def product_rows(root: Path) -> dict[str, str]:
    """Every product's current release: row count and a hash of its rows in a fixed order."""
    from mesh_tools.store.exchange import Exchange

    exchange = Exchange(root / "exchange")
    found = {}
    for project, model in PRODUCTS:
        release = exchange.current(project, model, None)
        assert release is not None, f"{project}.{model} has no current release"
        path = str(release.data_path).replace("'", "''")
        con = duckdb.connect()
        count, digest = con.execute(
            f"select count(*), md5(string_agg(cast(t as varchar), '|' order by cast(t as varchar))) "
            f"from read_parquet('{path}') t"
        ).fetchone()
        con.close()
        found[f"{project}.{model}"] = f"{count}:{digest}"
    return found


def ran(output: str) -> int:
    match = re.search(r"succeeded in [\d.]+s; ran (\d+) of (\d+) models, reused (\d+)", output)
    assert match, output[-2000:]
    return int(match.group(1))


def reasons(output: str) -> dict[str, str]:
    """`--explain`'s `    node: why` lines (why each node ran; a product's early cutoff is `confirmed`'s)."""
    found = re.findall(r"^    ([\w.]+(?: v\d+)?(?: \(upstream view\))?): (.+)$", output, re.M)
    return {node: why for node, why in found if not why.startswith(_CONFIRMED)}


_CONFIRMED = "rows unchanged: readers reused"


def confirmed(output: str) -> set[str]:
    """The products `--explain` says were rebuilt with unchanged rows (their current release confirmed)."""
    return set(re.findall(rf"^    ([\w.]+(?: v\d+)?): {_CONFIRMED}", output, re.M))


def _edit(roots: tuple[Path, ...], relative: str, old: str, new: str) -> None:
    """The same edit of one file in every copy (``old`` must be there)."""
    for root in roots:
        path = root / relative
        text = path.read_text()
        assert old in text, (path, old)
        path.write_text(text.replace(old, new))


def test_after_each_change_the_products_equal_a_full_build(tmp_path: Path) -> None:
    a = copy_fixture("state_mesh", tmp_path / "a")
    b = copy_fixture("state_mesh", tmp_path / "b")
    first = _build_a(a)
    assert "every model ran: no earlier mesh build of this target is recorded" in first

    # 1. a model's SQL: only it and what reads it (across domains) run
    _edit((a, b), "shop/models/refunds.sql", "amount\n", "amount * 2 as amount\n")
    out = _build_a(a)
    assert ran(out) == 2, out
    why = reasons(out)
    assert why["shop.refunds"] == "its code changed"
    assert why["report.refund_totals"] == "upstream shop.refunds ran"
    assert "report.revenue" not in why and "shop.orders" not in why

    # 2. new landing rows in one source: that source's descendants, not the other source's
    for root in (a, b):
        with open(root / "shop/landing/orders.csv", "a") as landing:
            landing.write("4,12,20.00,2026-11-05 08:00:00\n")
    out = _build_a(a)
    assert ran(out) == 3, out
    assert reasons(out)["shop.stg_orders"] == "the landing files of source landing.orders changed"
    assert "shop.refunds" not in reasons(out)

    # 3. an upstream publishes a new release on its own; the next mesh build rebuilds only its readers
    _edit((a, b), "shop/models/orders.sql", "}}\n", "}}\nwhere order_id <> 2\n")
    alone = run_mesh("build", "shop", cwd=a)
    assert alone.returncode == 0 and ran(alone.stdout) == 1, alone.stdout[-2000:]
    out = _build_a(a)
    assert ran(out) == 1, out
    assert reasons(out)["report.revenue"] == "upstream shop.orders ran"
    assert reasons(out)["shop.orders (upstream view)"] == "upstream shop.orders has a new release"
    assert "shop: nothing changed, no dbt run" in out

    # 4. a macro of the shared package changes, and a model's code, built without publishing: only the models
    # that call the macro and the changed model run; nothing published, so no reader runs
    _edit((a, b), "shared/macros/cents.sql", "* 100)", "* 100) + 1")
    _edit((a, b), "shop/models/refunds.sql", "amount * 2", "amount * 2 + 0")
    unpublished = run_mesh("build", "--no-publish", "--explain", cwd=a)
    out = unpublished.stdout
    assert unpublished.returncode == 0 and ran(out) == 2, out
    assert reasons(out)["shop.orders"] == "macro to_cents changed"
    assert reasons(out)["shop.refunds"] == "its code changed"
    assert "shop.stg_orders" not in reasons(out) and "shop.stg_refunds" not in reasons(out)

    # 4b. then a column marked PII (metadata only, beyond dbt's comparison): the next build publishes what the
    # unpublished one built, and rebuilds the product so its release masks the column; their readers run
    _edit((a, b), "shop/models/schema.yml", "data_tests: [unique, not_null]\n",
          "data_tests: [unique, not_null]\n      - name: customer_id\n        meta: {pii: true}\n")  # fmt: skip
    out = _build_a(a)
    assert reasons(out)["shop.refunds"] == "its current release is not from its last build", out
    assert reasons(out)["shop.orders"] == "its documentation or metadata changed (its release must say so)", out
    assert reasons(out)["report.revenue"] == "upstream shop.orders ran"
    assert reasons(out)["report.refund_totals"] == "upstream shop.refunds ran"
    # the totals of the refunds did not change (a column marked PII is not in them): early cutoff
    assert confirmed(out) == {"report.refund_totals"}, out
    from mesh_tools.store.exchange import Exchange

    release = Exchange(a / "exchange").current("shop", "orders", None)
    assert release is not None
    nulls = (
        duckdb.connect()
        .execute(f"select count(*), count(customer_id) from read_parquet('{release.data_path}')")
        .fetchone()
    )
    assert nulls[0] > 0 and nulls[1] == 0  # the release masks the column now marked PII

    # 5. a var in dbt_project.yml (beyond dbt's state comparison): the domain is built in full
    _edit((a, b), "shop/dbt_project.yml", "flags:", "vars:\n  refund_factor: 3\n\nflags:")
    _edit((a, b), "shop/models/refunds.sql", "amount * 2", "amount * {{ var('refund_factor', 2) }}")
    out = _build_a(a)
    assert "shop: every model ran: dbt_project.yml changed" in out, out

    # nothing changed: no dbt at all, nothing published, the products as they were
    before = product_rows(a)
    idle = run_mesh("build", "--explain", cwd=a)
    assert idle.returncode == 0, idle.stdout[-2000:]
    assert ran(idle.stdout) == 0
    assert "shop: nothing changed, no dbt run (4 models reused)" in idle.stdout
    assert "report: nothing changed, no dbt run (2 models reused)" in idle.stdout
    assert product_rows(a) == before

    assert "health and docs: nothing was rebuilt, so their last report stands" in idle.stdout

    # the health history tells reused models from fresh runs (the idle build's at the next collection)
    assert run_mesh("health", "--fail-on", "never", cwd=a).returncode == 0
    con = duckdb.connect(str(a / "health/history.duckdb"), read_only=True)
    runs = con.execute(
        "select domain, command, models, models_reused from runs order by finished_at desc limit 2"
    ).fetchall()
    steps = con.execute(
        "select models, models_reused from runs where domain = 'shop' and command = 'build' "
        "order by finished_at desc limit 3"
    ).fetchall()
    con.close()
    assert sorted(runs) == [("report", "reused", 0, 2), ("shop", "reused", 0, 4)]
    assert steps == [(4, 0), (2, 2), (2, 2)]  # step 5 built shop in full; steps 4b and 4 ran two, reused two

    # a new release with no new build (`mesh publish --new-release` again; without it, the same rows only confirm
    # the current release): its readers rebuild, even with no dbt run upstream
    assert run_mesh("publish", "shop", "--new-release", cwd=a).returncode == 0
    out = _build_a(a)
    assert reasons(out)["shop.orders (upstream view)"] == "upstream shop.orders has a new release", out

    # after all of it, the products equal a full build of the same code and data (copy B, built once)
    _finish(_start(b, "--no-state"))
    assert product_rows(a) == product_rows(b)


def test_what_dbt_state_comparison_does_not_see_is_decided_by_the_mesh(tmp_path: Path) -> None:
    """Metadata-only changes of a product, seed files, dbt_project.yml: decided on real manifests, no dbt run."""
    from mesh_tools.core.mesh import load_mesh
    from mesh_tools.model.manifest import Manifest
    from mesh_tools.state.file import BuildState
    from mesh_tools.state.inputs import project_digest
    from mesh_tools.state.plan import changed_metadata, plan_build

    root = copy_fixture("state_mesh", tmp_path)
    shop = load_mesh(root).domains["shop"]
    product = {"resource_type": "model", "package_name": "shop", "name": "orders", "config": {"access": "public"},
               "access": "public", "description": "One row per order.", "columns": {}}  # fmt: skip
    seed = {"resource_type": "seed", "package_name": "shop", "name": "fx", "original_file_path": "seeds/fx.csv",
            "fqn": ["shop", "fx"]}  # fmt: skip
    before = Manifest.of({"metadata": {"project_name": "shop"}, "nodes": {"model.shop.orders": product,
                          "seed.shop.fx": seed}}, "shop")  # fmt: skip
    same = Manifest.of({"metadata": {"project_name": "shop"}, "nodes": {"model.shop.orders": dict(product)}}, "shop")
    reworded = {**product, "description": "One row per order, refunds included."}
    after = Manifest.of({"metadata": {"project_name": "shop"}, "nodes": {"model.shop.orders": reworded}}, "shop")
    assert changed_metadata(before, same, "shop") == {}
    assert list(changed_metadata(before, after, "shop")) == ["model.shop.orders"]

    (root / "shop/seeds").mkdir()
    (root / "shop/seeds/fx.csv").write_text("currency,rate\nEUR,1\n")
    state = BuildState(folder=tmp_path, manifest=before, code="c", landing={}, owed=set(), storage=None,
                       loaded_at={}, built={}, project=project_digest(shop), seeds={"seed.shop.fx": "another"})  # fmt: skip
    plan = plan_build(shop, state, "c", None, set(), set(), project_digest(shop), {})
    assert not plan.full and plan.reasons["seed.shop.fx"] == "its file changed"
    assert "fqn:shop.fx+" in plan.selectors
    (root / "shop/dbt_project.yml").write_text((root / "shop/dbt_project.yml").read_text() + "\nvars: {x: 1}\n")
    plan = plan_build(shop, state, "c", None, set(), set(), project_digest(shop), {})
    assert plan.full and plan.why_full.startswith("dbt_project.yml changed")
