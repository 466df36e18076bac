"""dbt-loom configs are read as dbt-loom reads them, less their comments; a producer defining UDFs crosses."""

from __future__ import annotations

import csv
import json
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
import yaml

from mesh_tools.core.mesh import load_mesh
from mesh_tools.core.yamlfile import comment_spans
from mesh_tools.model.manifest import Manifest
from mesh_tools.state.inputs import function_reads, node_reads
from tests.foreign.corpus import CORPUS, BuiltForeign


def comments(text: str) -> list[str]:
    spans = comment_spans(text)
    assert spans is not None
    return [text[start:end] for start, end in spans]


def test_comment_spans_are_what_yaml_drops() -> None:
    text = (
        "# head $A\n"
        "manifests:  # after a key ${B}\n"
        "  - name: a#b  # c\n"  # a#b is a value: '#' not after a space
        '    path: "x # y"\n'  # quoted: a value
        "    note: | # header $C\n"
        "      # a line of the block: a value\n"
        "      $D\n"
        "    flow: [1, # in flow\n"
        "      2]\n"
        "# tail\n"
    )
    assert comments(text) == [
        "# head $A",
        "# after a key ${B}",
        "# c",
        "# header $C",
        "# in flow",
        "# tail",
    ]
    # removing every span leaves the same document: they are exactly the comments
    stripped, done = "", 0
    for start, end in comment_spans(text) or []:
        stripped, done = stripped + text[done:start], end
    assert yaml.safe_load(stripped + text[done:]) == yaml.safe_load(text)


def test_a_text_that_does_not_scan_has_no_spans() -> None:
    assert comment_spans("a: 'unclosed\n") is None


def _project(root: Path, name: str, loom: str | None = None) -> None:
    folder = root / name
    (folder / "models").mkdir(parents=True)
    (folder / "dbt_project.yml").write_text(f"name: {name}\nprofile: {name}\n")
    if loom is not None:
        (folder / "dbt_loom.config.yml").write_text(loom)


LOOM = """\
# dbt-loom reads the producer's manifest. In CI set $MANIFEST_BUCKET; locally ${PRODUCER_DIR}
# defaults to the sibling folder.
manifests:
  - name: producer_manifest  # was $OLD_LABEL
    type: file
    config:
      # path: ${UNUSED_ROOT}/producer/target/manifest.json
      path: ${LOOM_ROOT}/producer/target/manifest.json
"""


def test_variables_in_comments_are_neither_substituted_nor_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("MANIFEST_BUCKET", "PRODUCER_DIR", "OLD_LABEL", "UNUSED_ROOT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOM_ROOT", str(tmp_path))
    _project(tmp_path, "producer")
    _project(tmp_path, "consumer", LOOM)
    mesh = load_mesh(tmp_path)
    assert not [n for n in mesh.notes if "is not set" in n], mesh.notes
    (edge,) = mesh.domains["consumer"].upstreams
    assert (edge.name, edge.label) == ("producer", "producer_manifest")
    assert edge.declared_in.endswith("consumer/dbt_loom.config.yml:4")


def test_a_brace_in_one_comment_never_swallows_the_config_up_to_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dbt-loom's pattern ${...} runs across lines: '${' in one note and '}' in a later one took the
    text between them, 'manifests:' included, for a variable name (dbt-loom itself then reads no manifests)."""
    monkeypatch.setenv("LOOM_ROOT", str(tmp_path))
    _project(tmp_path, "producer")
    loom = LOOM.replace("sibling folder.", "sibling folder (${ opens a variable").replace(
        "/manifest.json\n", "/manifest.json  # and } closes it\n"
    )
    assert "${ opens" in loom and "# and } closes" in loom
    _project(tmp_path, "consumer", loom)
    (edge,) = load_mesh(tmp_path).domains["consumer"].upstreams
    assert edge.name == "producer"


def test_an_unset_variable_in_a_value_is_still_named_at_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOOM_ROOT", raising=False)
    _project(tmp_path, "producer")
    _project(tmp_path, "consumer", LOOM)
    notes = [n for n in load_mesh(tmp_path).notes if "is not set" in n]
    assert len(notes) == 1, notes
    assert notes[0].endswith(
        "consumer/dbt_loom.config.yml:8: $LOOM_ROOT is not set; dbt-loom reads it as an empty string"
    )


# -- a producer defining user-defined functions (tests/fixtures/foreign_meshes/loom_udf)


def expected_figures() -> dict[str, tuple[int, Decimal, Decimal, Decimal]]:
    """finance.revenue_by_region computed from pricing's raw CSV files, not from a build."""
    cent = Decimal("0.01")
    raw = CORPUS / "loom_udf/pricing"
    with open(raw / "reference/vat_rates.csv", newline="") as handle:
        rates = {r["region"]: Decimal(r["rate_pct"]) for r in csv.DictReader(handle)}
    totals: dict[str, list[Decimal]] = {}
    with open(raw / "seeds/raw_orders.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            net = (Decimal(row["gross"]) * (100 - int(row["discount_pct"])) / 100).quantize(cent, ROUND_HALF_UP)
            vat = (net * rates[row["region"]] / 100).quantize(cent, ROUND_HALF_UP)
            count, net_sum, vat_sum = totals.get(row["region"], [Decimal(0)] * 3)
            totals[row["region"]] = [count + 1, net_sum + net, vat_sum + vat]
    whole = sum(t[1] for t in totals.values())
    return {
        region: (int(count), net, vat, (100 * net / whole).quantize(Decimal("0.1"), ROUND_HALF_UP))
        for region, (count, net, vat) in totals.items()
    }


def revenue_by_region(root: Path) -> dict[str, tuple[int, Decimal, Decimal, Decimal]]:
    import duckdb

    con = duckdb.connect(str(root / "finance/finance.duckdb"), read_only=True)
    try:
        rows = con.execute("select region, orders, net_revenue, vat_due, share_pct from main.revenue_by_region")
        return {r[0]: tuple(r[1:]) for r in rows.fetchall()}  # type: ignore[misc]
    finally:
        con.close()


def test_a_producer_defining_functions_publishes_and_its_consumer_builds(corpus: dict[str, BuiltForeign]) -> None:
    built = corpus["loom_udf"]
    assert built.result.returncode == 0, built.output
    assert revenue_by_region(built.root) == expected_figures()
    # what crosses is net_orders' rows and columns; the functions stay pricing's
    current = json.loads((built.root / "exchange/products/pricing/net_orders/unversioned/current.json").read_text())
    release = built.root / "exchange/products/pricing/net_orders/unversioned/releases" / current["release_id"]
    descriptor = json.loads((release / "release.json").read_text())
    assert [c["name"] for c in descriptor["columns"]] == ["id", "region", "net", "vat"]
    assert descriptor["row_count"] == sum(f[0] for f in expected_figures().values())
    consumer = json.loads((built.root / "finance/target/manifest.json").read_text())
    assert sorted(consumer["functions"]) == ["function.finance.pct_of"]
    # finance's dbt_loom.config.yml names unset variables in its comments only
    assert "is not set" not in built.output


def test_what_a_function_reads_is_what_its_caller_reads(corpus: dict[str, BuiltForeign]) -> None:
    """The file vat_rate reads is recorded as net_orders' input: its compiled SQL names only the function."""
    built = corpus["loom_udf"]
    domain = load_mesh(built.root).domains["pricing"]
    manifest = Manifest.load(built.root / "pricing/target/manifest.json", "pricing")
    reads = node_reads(domain, manifest)
    assert reads["model.pricing.net_orders"] == {"files": ["reference/vat_rates.csv"], "opaque": None}
    assert reads["model.pricing.stg_orders"] == {"files": [], "opaque": None}


def _manifest(model_depends: list[str], functions: dict[str, dict]) -> Manifest:
    model = {
        "resource_type": "model", "package_name": "p", "name": "m", "compiled": True,
        "compiled_code": "select p.main.f(x) from t", "depends_on": {"nodes": model_depends},
    }  # fmt: skip
    return Manifest.of({"nodes": {"model.p.m": model}, "functions": functions}, "p")


def _function(body: str, *, calls: tuple[str, ...] = (), compiled: bool = True, language: str = "sql") -> dict:
    return {
        "resource_type": "function", "language": language, "raw_code": body, "compiled": compiled,
        "compiled_code": body if compiled else None, "depends_on": {"nodes": list(calls)},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("functions", "files", "opaque"),
    [
        # a function calling another: both bodies are read
        (
            {
                "function.p.f": _function("g(x) + 1", calls=("function.p.g",)),
                "function.p.g": _function("(select max(v) from read_parquet('ref/rates.parquet'))"),
            },
            ["ref/rates.parquet"],
            None,
        ),
        # not compiled in this build (a state-aware build selects what changed): its code, when it holds no Jinja
        ({"function.p.f": _function("(select 1 from 'a.csv')", compiled=False)}, ["a.csv"], None),
        (
            {"function.p.f": _function("{{ var('k') }} * x", compiled=False)},
            [],
            "it calls function f, SQL built by Jinja this build did not compile: what that reads cannot be observed",
        ),
        (
            {"function.p.f": _function("return x", language="python")},
            [],
            "it calls function f, a python function: what that reads cannot be observed",
        ),
        ({}, [], "it calls function f, which its manifest does not hold"),
        ({"function.p.f": _function("x * random()")}, [], "in function f it calls"),
    ],
)
def test_function_reads(functions: dict[str, dict], files: list[str], opaque: str | None) -> None:
    manifest = _manifest(["function.p.f"], functions)
    reads = function_reads(manifest.nodes["model.p.m"], manifest, "duckdb", set())
    assert reads.files == files
    if opaque is None:
        assert reads.opaque is None
    else:
        assert reads.opaque is not None and opaque in reads.opaque, reads.opaque
