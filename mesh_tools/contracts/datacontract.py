"""Data contracts in the Open Data Contract Standard: export them, and test releases against them with
datacontract-cli (an optional tool, in an environment of its own).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh_tools.core.config import env_seconds
from mesh_tools.core.errors import ConfigError, MeshError, display_path
from mesh_tools.core.files import write_atomic
from mesh_tools.core.mesh import Mesh
from mesh_tools.model import odcs
from mesh_tools.model.manifest import Manifest
from mesh_tools.model.nodes import Node
from mesh_tools.model.release import Contract
from mesh_tools.store.exchange import PROD, Exchange, Release, open_exchange

DATACONTRACT_VARIABLE = "MESH_DATACONTRACT"


@dataclass
class ProductContract:
    """One product version's contract, and what it was made from."""

    domain: str
    product: str
    contract: dict[str, Any]
    release: Release | None = None  # its current release (None: not released yet, a proposed contract)
    note: str | None = None  # why it says less than it could


@dataclass
class Export:
    written: list[tuple[ProductContract, Path]] = field(default_factory=list)
    stale: list[Path] = field(default_factory=list)  # earlier exports' contracts of products now gone
    skipped: list[str] = field(default_factory=list)  # what has no contract, and why


def product_contracts(mesh: Mesh, domains: list[str], exchange: Exchange | None = None,
                      skipped: list[str] | None = None) -> list[ProductContract]:  # fmt: skip
    """Every public model version of ``domains``: the contract of its current release in this run's channel,
    else (never published) a proposed one from its model. A domain never built or parsed is ``skipped``."""
    exchange = exchange or open_exchange(mesh)
    out: list[ProductContract] = []
    for name in domains:
        domain = mesh.domains[name]
        if not domain.manifest_path.is_file():
            if skipped is not None:
                skipped.append(f"{name}: never built or parsed (`mesh stitch {name}`), no contract")
            continue
        manifest = Manifest.load(domain.manifest_path, name, f"Build or parse the domain first: `mesh stitch {name}`.")
        for node in sorted(manifest.products(name), key=lambda n: n.key):
            out.append(_contract_of(exchange, manifest, node))
    return out


def _contract_of(exchange: Exchange, manifest: Manifest, node: Node) -> ProductContract:
    tests = manifest.tests_of(node.unique_id, data_only=True)
    release = exchange.current(node.package, node.name, node.version, verify=False)
    if release is None:
        contract = odcs.build_contract(None, node, tests, owner=manifest.owner(node))
        note: str | None = "not released yet: a proposed contract"
        if exchange.env != PROD and exchange.current_id(node.package, node.name, node.version, PROD):
            note = f"no release in channel {exchange.env!r} (prod has one): a proposed contract"
        return ProductContract(node.package, node.key, contract, None, note)
    d = release.descriptor
    same = Contract.of(node).fingerprint() == d.contract_hash
    # the release is what the contract describes: a model changed since is described by its next release
    server = exchange.release_server(d, exchange.env)
    contract = odcs.build_contract(d, node if same else None, tests if same else (), server)
    note = None if same else "the model changed since this release: its contract describes the release"
    return ProductContract(node.package, node.key, contract, release, note)


def export_contracts(mesh: Mesh, domains: list[str], out: Path) -> Export:
    """Write each contract as ``<out>/<domain>/<domain>.<model>[.v<N>].odcs.yaml`` (each file replaced atomically)."""
    result = Export()
    if out.is_symlink() and not out.exists():
        raise ConfigError(f"{display_path(out)} is a link to nothing: give -o a folder.")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{display_path(out)} is a file: give -o a folder.")
    contracts = []
    for item in product_contracts(mesh, domains, skipped=result.skipped):
        problems = odcs.schema_problems(item.contract)
        if problems:  # never written: a contract the standard's schema refuses (a bad `meta.odcs_quality`)
            result.skipped.append(f"{item.product}: its contract breaks the ODCS schema, not written: {problems[0]}")
        else:
            contracts.append(item)
    kept: set[Path] = set()
    for item in contracts:
        path = out / item.domain / f"{item.product}{odcs.CONTRACT_SUFFIX}"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, odcs.to_yaml(item.contract))
        kept.add(path)
        result.written.append((item, path))
    for name in domains:  # contracts of products that are gone: named, never deleted (they may be someone's)
        folder = out / name
        if folder.is_dir():
            result.stale += sorted(p for p in folder.glob(f"{name}.*{odcs.CONTRACT_SUFFIX}") if p not in kept)
    return result


# -- datacontract-cli


def find_datacontract() -> Path:
    """The datacontract command: ``MESH_DATACONTRACT``, else ``datacontract`` on the PATH."""
    named = os.environ.get(DATACONTRACT_VARIABLE)
    if named:
        path = Path(named).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise ConfigError(f"{DATACONTRACT_VARIABLE}={named}: no such program. Point it at the `datacontract` "
                          "of the environment where datacontract-cli is installed.")  # fmt: skip
    found = shutil.which("datacontract")
    if found:
        return Path(found)
    raise ConfigError(
        "datacontract-cli is not installed. It pins its own DuckDB, so give it an environment of its own: "
        "`python -m venv ~/.venvs/datacontract && ~/.venvs/datacontract/bin/pip install "
        "'datacontract-cli[duckdb,parquet]>=1.2.8,<1.3'`, then `export MESH_DATACONTRACT=~/.venvs/datacontract/bin/"
        "datacontract` (or put it on the PATH)."
    )


def test_releases(mesh: Mesh, domains: list[str]) -> tuple[dict[str, list[tuple[str, str]]], list[str]]:
    """`datacontract test` of every current release of ``domains`` against its contract (which includes
    linting it): (product, problem) per domain, for GOV107, and what was not tested and why. Warnings
    (checks the tool cannot run on Parquet, checks of severity warn) are not problems; a failed check, a
    contract the tool refuses, or a release file that fails its SHA-256 check is."""
    program = find_datacontract()
    timeout = env_seconds("MESH_DATACONTRACT_TIMEOUT", 120.0)
    exchange = open_exchange(mesh)
    out: dict[str, list[tuple[str, str]]] = {}
    notes: list[str] = []
    timed_out = False
    with tempfile.TemporaryDirectory(prefix="mesh-datacontract-") as scratch:
        for item in product_contracts(mesh, domains, exchange, skipped=notes):
            if item.release is None:
                notes.append(f"{item.product}: never released, nothing to test")
                continue
            d = item.release.descriptor
            if d.format != "parquet":
                notes.append(f"{item.product}: a warehouse release (its credentials are the reader's), not tested")
                continue
            if timed_out:
                notes.append(f"{item.product}: not tested, datacontract-cli timed out on an earlier product")
                continue
            try:
                release = exchange.load(d.project, d.model, d.version, d.release_id)  # its files' SHA-256 checked
                data = release.data_path  # (in an object store: fetched, verified, cached)
            except MeshError as exc:
                out.setdefault(item.domain, []).append((item.product, f"the release cannot be tested: {exc}"))
                continue
            problems = _run_test(program, _testable(item.contract, d, data), Path(scratch), timeout)
            timed_out = any(p.startswith("`datacontract test` did not finish") for p in problems)
            if problems:
                out.setdefault(item.domain, []).extend((item.product, p) for p in problems)
    return out, notes


def _testable(contract: dict[str, Any], descriptor: Any, data: Path) -> dict[str, Any]:
    """The contract as datacontract-cli can test it against the release file: the file as its server, each
    column typed as the file holds it (Parquet's type, e.g. DECIMAL(38,0) for HUGEINT); a nested type the
    tool cannot parse is left to its logical type."""
    import copy

    parquet = {c.name.lower(): c.parquet_type for c in descriptor.columns}
    tested = copy.deepcopy(contract)
    tested["servers"] = [odcs.local_server(str(data))]
    for obj in tested.get("schema") or []:
        for prop in obj.get("properties") or []:
            kind = parquet.get(str(prop.get("name")).lower())
            if kind and _plain_type(kind):
                prop["physicalType"] = kind
            else:
                prop.pop("physicalType", None)
    return tested


def _plain_type(kind: str) -> bool:
    """A scalar type name datacontract-cli parses: one word, or a DECIMAL with its precision."""
    upper = kind.upper()
    return upper.startswith("DECIMAL") or not any(mark in upper for mark in ("STRUCT", "MAP", "[", "(", "UNION", " "))


def _run_test(program: Path, contract: dict[str, Any], scratch: Path, timeout: float) -> list[str]:
    path = scratch / f"{contract['id']}{odcs.CONTRACT_SUFFIX}"
    report = path.with_suffix(".json")
    path.write_text(odcs.to_yaml(contract), encoding="utf-8")
    report.unlink(missing_ok=True)
    command = [str(program), "test", str(path), "--output-format", "json", "--output", str(report)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=scratch)
    except subprocess.TimeoutExpired:
        return [f"`datacontract test` did not finish in {timeout:g} s (MESH_DATACONTRACT_TIMEOUT)"]
    except OSError as exc:
        raise ConfigError(f"{program}: cannot run datacontract-cli ({exc.strerror or exc}).") from None
    try:
        result = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        result = None
    if not isinstance(result, dict) or not isinstance(result.get("checks") or [], list):
        tail = " ".join((done.stderr or done.stdout).split())[-300:]
        return [f"`datacontract test` gave no readable report (exit {done.returncode}): {tail}"]
    problems = []
    for check in result.get("checks") or []:
        if not isinstance(check, dict):
            continue
        if check.get("result") in ("failed", "error"):
            detail = check.get("reason") or check.get("details") or ""
            field_name = f" ({check['field']})" if check.get("field") else ""
            problems.append(f"{check.get('name')}{field_name}{': ' + str(detail) if detail else ''}".strip())
    if not problems and result.get("result") in ("failed", "error"):
        problems.append(f"`datacontract test` says {result.get('result')}")
    return problems
