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

from mesh_tools.core.errors import ConfigError, MeshError, display_path
from mesh_tools.core.files import write_atomic
from mesh_tools.core.mesh import Mesh
from mesh_tools.model import odcs
from mesh_tools.model.manifest import Manifest
from mesh_tools.model.nodes import Node
from mesh_tools.model.release import Contract
from mesh_tools.store.exchange import Exchange, Release, open_exchange

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


def product_contracts(mesh: Mesh, domains: list[str], exchange: Exchange | None = None) -> list[ProductContract]:
    """Every public model version of ``domains``: the contract of its current release in this run's channel,
    else (never published) a proposed one from its model."""
    exchange = exchange or open_exchange(mesh)
    out: list[ProductContract] = []
    for name in domains:
        domain = mesh.domains[name]
        manifest = Manifest.load(domain.manifest_path, name, f"Build or parse the domain first: `mesh stitch {name}`.")
        for node in sorted(manifest.products(name), key=lambda n: n.key):
            out.append(_contract_of(exchange, manifest, node))
    return out


def _contract_of(exchange: Exchange, manifest: Manifest, node: Node) -> ProductContract:
    tests = manifest.tests_of(node.unique_id, data_only=True)
    release = exchange.current(node.package, node.name, node.version, verify=False)
    if release is None:
        contract = odcs.build_contract(None, node, tests, owner=manifest.owner(node))
        return ProductContract(node.package, node.key, contract, None, "not released yet: a proposed contract")
    d = release.descriptor
    same = Contract.of(node).fingerprint() == d.contract_hash
    # the release is what the contract describes: a model changed since is described by its next release
    server = exchange.release_server(d, exchange.env)
    contract = odcs.build_contract(d, node if same else None, tests if same else (), server)
    note = None if same else "the model changed since this release: its contract describes the release"
    return ProductContract(node.package, node.key, contract, release, note)


def export_contracts(mesh: Mesh, domains: list[str], out: Path) -> Export:
    """Write each contract as ``<out>/<domain>/<product>.odcs.yaml`` (each file replaced atomically)."""
    result = Export()
    contracts = product_contracts(mesh, domains)
    problems = [(c.product, p) for c in contracts for p in odcs.schema_problems(c.contract)]
    if problems:  # a bug of ours: never write a contract the standard's schema refuses
        raise MeshError(f"the ODCS contract of {problems[0][0]} breaks the standard's schema: {problems[0][1]}")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{display_path(out)} is a file: give -o a folder.")
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
        "'datacontract-cli[duckdb,parquet]>=1.2,<1.3'`, then `export MESH_DATACONTRACT=~/.venvs/datacontract/bin/"
        "datacontract` (or put it on the PATH)."
    )


def test_releases(mesh: Mesh, domains: list[str], timeout: float = 300) -> dict[str, list[tuple[str, str]]]:
    """`datacontract test` of every current release of ``domains`` against its contract (which includes
    linting it): (product, problem) per domain, for GOV107. Warnings (checks the tool cannot run on
    Parquet) are not problems; a check that fails, or a contract the tool refuses, is."""
    program = find_datacontract()
    exchange = open_exchange(mesh)
    out: dict[str, list[tuple[str, str]]] = {}
    with tempfile.TemporaryDirectory(prefix="mesh-datacontract-") as scratch:
        for item in product_contracts(mesh, domains, exchange):
            if item.release is None or item.release.descriptor.format != "parquet":
                continue  # nothing released to test, or a warehouse table (its credentials are the reader's)
            d = item.release.descriptor
            release = exchange.load(d.project, d.model, d.version, d.release_id)  # its files' SHA-256 checked
            data = release.data_path  # (in an object store: fetched, verified, cached)
            contract = dict(item.contract, servers=[odcs.local_server(str(data))])
            problems = _run_test(program, contract, Path(scratch), timeout)
            if problems:
                out.setdefault(item.domain, []).extend((item.product, p) for p in problems)
    return out


def _run_test(program: Path, contract: dict[str, Any], scratch: Path, timeout: float) -> list[str]:
    path = scratch / f"{contract['id']}{odcs.CONTRACT_SUFFIX}"
    report = path.with_suffix(".json")
    path.write_text(odcs.to_yaml(contract), encoding="utf-8")
    command = [str(program), "test", str(path), "--output-format", "json", "--output", str(report)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=scratch)
    except subprocess.TimeoutExpired:
        return [f"`datacontract test` did not finish in {timeout:g} s"]
    except OSError as exc:
        raise ConfigError(f"{program}: cannot run datacontract-cli ({exc.strerror or exc}).") from None
    try:
        result = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        tail = " ".join((done.stderr or done.stdout).split())[-300:]
        return [f"`datacontract test` gave no report (exit {done.returncode}): {tail}"]
    problems = []
    for check in result.get("checks") or []:
        if check.get("result") in ("failed", "error"):
            detail = check.get("reason") or check.get("details") or ""
            field_name = f" ({check['field']})" if check.get("field") else ""
            problems.append(f"{check.get('name')}{field_name}{': ' + str(detail) if detail else ''}".strip())
    if not problems and result.get("result") in ("failed", "error"):
        problems.append(f"`datacontract test` says {result.get('result')}")
    return problems
