"""Right or full, at random (issue 28): after any sequence of changes, a state-aware build serves what `--full` does.

Two copies of the state_mesh fixture get the same random sequence of changes (code, macros, landing
rows added and deleted, a lookup file a model reads, an environment variable a model reads, the target
chosen by a variable, a column marked PII) and copy A alone gets the careless colleague's actions (a
hand-run `dbt run` from code since undone, a write into its database by another tool, a build that
did not publish) and the producer's own schedule (a producer built and published alone first). After each step A is built state-aware and B with `--full`, at the same time, and
every product's release must hold the same rows in both.

The sequence is seeded: ``MESH_STATE_FUZZ_SEED`` replays one (the seed is printed on failure), and
``MESH_STATE_FUZZ_STEPS`` (default 3) makes it longer.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb

from tests.helpers import copy_fixture, mesh_env, run_command
from tests.state.test_state_aware import product_rows

_BUDGET_SECONDS = 240  # the sequence stops (passing) after this long: the suite's time is bounded


class Meshes:
    """Copy A (state-aware) and copy B (full), their shared environment, and the steps taken so far."""

    def __init__(self, tmp_path: Path, seed: int) -> None:
        self.a = _prepare(copy_fixture("state_mesh", tmp_path / "a"))
        self.b = _prepare(copy_fixture("state_mesh", tmp_path / "b"))
        self.random = random.Random(seed)
        self.env = {"SHOP_TARGET": "dev", "REFUND_SCALE": "1"}
        self.steps: list[str] = []

    def both(self, edit: Callable[[Path], None]) -> None:
        for root in (self.a, self.b):
            edit(root)

    def build(self, a_args: tuple[str, ...] = ()) -> None:
        env = {**mesh_env(), **self.env}
        with ThreadPoolExecutor(2) as pool:
            runs = [pool.submit(run_command, ["mesh", "build", *args], root, env)
                    for root, args in ((self.a, a_args), (self.b, ("--no-state",)))]  # fmt: skip
            done = [r.result() for r in runs]
        for root, result in zip((self.a, self.b), done, strict=True):
            assert result.returncode == 0, f"{root.name}: {result.stdout[-3000:]}{result.stderr[-2000:]}"


def _prepare(root: Path) -> Path:
    """The fixture with the inputs the actions change: a target chosen by a variable (dev reads fewer
    orders), a lookup file and a variable read by the consumer's SQL."""
    shop, report = root / "shop", root / "report"
    (shop / "profiles.yml").write_text(
        "shop:\n  target: \"{{ env_var('SHOP_TARGET') }}\"\n  outputs:\n"
        "    dev: {type: duckdb, path: shop.duckdb, threads: 1}\n    prod: {type: duckdb, path: prod.duckdb, threads: 1}\n"
    )
    orders = shop / "models/orders.sql"
    orders.write_text(orders.read_text() + "{% if target.name == 'dev' %}where order_id <> 3{% endif %}\n")
    (report / "lookup").mkdir()
    (report / "lookup/rates.csv").write_text("rate\n1\n")
    (report / "models/revenue.sql").write_text(
        "select o.customer_id, sum(o.amount_cents) * max(r.rate) as revenue_cents, count(*) as orders\n"
        "from {{ ref('shop', 'orders') }} o cross join read_csv('lookup/rates.csv', header = true) r\n"
        "group by o.customer_id\n"
    )
    (report / "models/refund_totals.sql").write_text(
        "select count(*) as refunds, sum(amount) * {{ env_var('REFUND_SCALE') }} as refunded\n"
        "from {{ ref('shop', 'refunds') }}\n"
    )
    return root


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


# -- the actions: each returns a description of what it did


def _other(m: Meshes, options: list[str], path: Path) -> str:
    """A random option that the file does not hold already (an action always changes something)."""
    text = path.read_text() if path.exists() else ""
    return m.random.choice([o for o in options if o not in text] or options)


def edit_model(m: Meshes) -> str:
    factor = _other(m, ["* 1\n", "* 2\n", "* 3\n"], m.b / "shop/models/refunds.sql").strip("* \n")
    m.both(lambda r: (r / "shop/models/refunds.sql").write_text(
        f"select refund_id, order_id, amount * {factor} as amount\nfrom {{{{ ref('stg_refunds') }}}}\n"))  # fmt: skip
    return f"refunds.sql: amount * {factor}"


def edit_macro(m: Meshes) -> str:
    extra = _other(m, ["+ 0\n", "+ 1\n", "+ 2\n", "+ 3\n"], m.b / "shared/macros/cents.sql").strip("+ \n")
    m.both(lambda r: (r / "shared/macros/cents.sql").write_text(
        "{% macro to_cents(column) -%}\n    cast(round({{ column }} * 100) as integer) + " + extra +
        "\n{%- endmacro %}\n"))  # fmt: skip
    return f"to_cents + {extra}"


def add_order(m: Meshes) -> str:
    order = 10 + len(m.steps)
    line = f"{order},{m.random.choice([10, 11, 12])},{m.random.randint(1, 99)}.50,2026-11-05 08:00:00\n"

    def append(root: Path) -> None:
        with (root / "shop/landing/orders.csv").open("a") as landing:
            landing.write(line)

    m.both(append)
    return f"landing: order {order} added"


def delete_order(m: Meshes) -> str:
    def drop(root: Path) -> None:
        lines = (root / "shop/landing/orders.csv").read_text().splitlines(keepends=True)
        if len(lines) > 2:
            (root / "shop/landing/orders.csv").write_text("".join(lines[:-1]))

    m.both(drop)
    return "landing: last order deleted"


def change_lookup(m: Meshes) -> str:
    rate = _other(m, ["\n1\n", "\n2\n", "\n3\n", "\n4\n"], m.b / "report/lookup/rates.csv").strip()
    m.both(lambda r: (r / "report/lookup/rates.csv").write_text(f"rate\n{rate}\n"))
    return f"lookup rate {rate}"


def change_env(m: Meshes) -> str:
    m.env["REFUND_SCALE"] = m.random.choice([v for v in "12345" if v != m.env["REFUND_SCALE"]])
    return f"REFUND_SCALE={m.env['REFUND_SCALE']}"


def switch_target(m: Meshes) -> str:
    m.env["SHOP_TARGET"] = "prod" if m.env["SHOP_TARGET"] == "dev" else "dev"
    return f"SHOP_TARGET={m.env['SHOP_TARGET']}"


def toggle_pii(m: Meshes) -> str:
    def toggle(root: Path) -> None:
        path = root / "shop/models/schema.yml"
        text = path.read_text()
        marked = "      - name: customer_id\n        meta: {pii: true}\n"
        if marked in text:
            path.write_text(text.replace(marked, ""))
        else:
            _replace(
                path, "        data_tests: [unique, not_null]\n", "        data_tests: [unique, not_null]\n" + marked
            )

    m.both(toggle)
    return "customer_id PII toggled"


def hand_run(m: Meshes) -> str:
    """In A only: `dbt run` from temporary code, the code undone, then maybe a command that writes no relation."""
    shop = m.a / "shop"
    stg = shop / "models/stg_orders.sql"
    original = stg.read_text()
    stg.write_text(original + "where order_id <> 1\n")
    quiet = m.random.random() < 0.5
    env = {**mesh_env(), **m.env}
    args = ["dbt", "run", "-s", "stg_orders", *(["--no-write-json"] if quiet else [])]
    assert run_command(args, shop, env).returncode == 0
    stg.write_text(original)
    if not quiet:
        assert run_command(["dbt", "compile"], shop, env).returncode == 0
    return f"A: hand-run dbt run from undone code ({'--no-write-json' if quiet else 'then dbt compile'})"


def outside_write(m: Meshes) -> str:
    """In A only: another tool deletes rows in the domain's own database."""
    path = m.a / "shop" / ("shop.duckdb" if m.env["SHOP_TARGET"] == "dev" else "prod.duckdb")
    if not path.exists():
        return "A: no database to write into yet"
    con = duckdb.connect(str(path))
    con.execute("delete from main.stg_orders where order_id = 1")
    con.close()
    return f"A: rows deleted in {path.name} by another tool"


def no_publish(m: Meshes) -> str:
    """In A only: a build that did not publish (the next build must publish what it built)."""
    edit_model(m)
    result = run_command(["mesh", "build", "--no-publish"], m.a, {**mesh_env(), **m.env})
    assert result.returncode == 0, result.stdout[-2000:]
    return "A: a change built with --no-publish"


def producer_first(m: Meshes) -> str:
    """In A only: a change the producer builds and publishes on its own, before the mesh-wide build."""
    edit_model(m)
    result = run_command(["mesh", "build", "shop"], m.a, {**mesh_env(), **m.env})
    assert result.returncode == 0, result.stdout[-2000:]
    return "A: a change shop built and published alone first"


ACTIONS = [edit_model, edit_macro, add_order, delete_order, change_lookup, change_env, switch_target, toggle_pii,
           hand_run, outside_write, no_publish, producer_first]  # fmt: skip


def test_any_sequence_of_changes_publishes_what_a_full_build_does(tmp_path: Path) -> None:
    seed = int(os.environ.get("MESH_STATE_FUZZ_SEED") or random.SystemRandom().randrange(1, 10**6))
    steps = int(os.environ.get("MESH_STATE_FUZZ_STEPS") or 3)
    meshes = Meshes(tmp_path, seed)
    start = time.monotonic()
    meshes.build()
    for _ in range(steps):
        if time.monotonic() - start > _BUDGET_SECONDS:
            break
        action = meshes.random.choice(ACTIONS)
        meshes.steps.append(action(meshes))
        meshes.build()
        a, b = product_rows(meshes.a), product_rows(meshes.b)
        assert a == b, (
            f"MESH_STATE_FUZZ_SEED={seed}: after {meshes.steps}, the state-aware products differ from a full "
            f"build: {sorted(k for k in a if a[k] != b.get(k))}"
        )


def test_the_actions_change_what_they_say(tmp_path: Path) -> None:
    """Each action really changes its copies (a random test of actions that do nothing would prove nothing)."""
    meshes = Meshes(tmp_path, 7)
    expected = {edit_model: "shop/models/refunds.sql", edit_macro: "shared/macros/cents.sql",
                add_order: "shop/landing/orders.csv", delete_order: "shop/landing/orders.csv",
                change_lookup: "report/lookup/rates.csv", toggle_pii: "shop/models/schema.yml"}  # fmt: skip
    for action, path in [*expected.items(), *expected.items()]:  # twice: the second time from the changed state
        before = {root: (root / path).read_text() for root in (meshes.a, meshes.b)}
        action(meshes)
        for root in (meshes.a, meshes.b):
            assert (root / path).read_text() != before[root], (action.__name__, root.name)
    for action, variable in ((change_env, "REFUND_SCALE"), (switch_target, "SHOP_TARGET")):
        before_env = dict(meshes.env)
        action(meshes)
        assert meshes.env[variable] != before_env[variable]
