"""Revocation: a consumer loses, in its own storage, the stub views of the products it may no longer read.

A product it may no longer read: its producer restricted it (``meta.allowed_consumers``), the consumer
dropped the dependency, the product or one of its versions is gone. Its view would go on returning the
release it was stitched to. The mesh records every stub relation it stitched for the domain (the ledger,
in the domain's target folder, written before the stubs change) and, once one is retired, which storages
it was dropped from. Only those relations, and only when they are views, are ever dropped: what the
domain's team made itself, even in an ``upstream_<project>`` schema, is never touched.

DuckDB storages are cleaned here. On a warehouse (PostgreSQL) the producer revokes the grants at its
next publish or ``mesh grants``, and a stale view there reads nothing.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mesh_tools.core.errors import MeshError, display_path
from mesh_tools.core.files import write_atomic
from mesh_tools.core.mesh import Domain
from mesh_tools.core.yamlfile import load_yaml
from mesh_tools.dbt.packages import read_marker
from mesh_tools.model.manifest import Manifest
from mesh_tools.stitch.stub import stub_schema

LEDGER = "mesh_stub_relations.json"
Relation = tuple[str, str]  # (schema as the stub names it, view)


@dataclass
class Ledger:
    """What the mesh stitched into a domain's storage, and what it retired from it."""

    stitched: set[Relation] = field(default_factory=set)
    retired: dict[Relation, set[str]] = field(default_factory=dict)  # relation -> storages it was dropped from

    def pending(self, storage: str) -> list[Relation]:
        return sorted(r for r, done in self.retired.items() if storage not in done)


def ledger_path(domain: Domain) -> Path:
    return domain.target_dir / LEDGER


def load_ledger(domain: Domain) -> Ledger:
    """The domain's ledger; an unreadable one counts as empty (the installed stubs seed it again)."""
    try:
        data = json.loads(ledger_path(domain).read_text(encoding="utf-8"))
        stitched = {(str(s), str(v)) for s, v in data.get("stitched", [])}
        retired = {(str(s), str(v)): {str(x) for x in done} for s, v, done in data.get("retired", [])}
        return Ledger(stitched, retired)
    except (OSError, ValueError, TypeError, AttributeError):
        return Ledger()


def save_ledger(domain: Domain, ledger: Ledger) -> None:
    data = {
        "stitched": sorted(ledger.stitched),
        "retired": [[s, v, sorted(done)] for (s, v), done in sorted(ledger.retired.items())],
    }
    domain.target_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(ledger_path(domain), json.dumps(data, indent=2) + "\n")


def allowed_relations(domain: Domain, manifests: dict[str, Manifest]) -> set[Relation]:
    """The stub relations the domain may have now: every product of a declared upstream it may read (as
    ``stub.stub_files`` names them: the upstream's stub schema, the model's alias)."""
    relations: set[Relation] = set()
    for up in domain.upstreams:
        manifest = manifests.get(up.name)
        if manifest is None:
            continue
        schema = stub_schema(manifest.project)
        relations |= {(schema, str(n.raw.get("alias") or n.name)) for n in manifest.for_consumer(domain.name).public()}
    return relations


def installed_relations(domain: Domain) -> set[Relation]:
    """The relations the stub packages in the domain's packages folder declare (what a lost ledger knew)."""
    found: set[Relation] = set()
    folder = domain.packages_dir
    if not folder.is_dir():
        return found
    for entry in folder.iterdir():
        marker = read_marker(entry) if entry.is_dir() and not entry.is_symlink() else None
        if not marker or marker.get("runtime") or not marker.get("upstream"):
            continue
        found |= _declared(entry)
    return found


def _declared(folder: Path) -> set[Relation]:
    """(schema, alias) of every model a stub package declares, read from its own files."""
    try:
        project = load_yaml(folder / "dbt_project.yml", required=False)
        properties = load_yaml(folder / "models" / "_public_models.yml", required=False)
    except MeshError:
        return set()
    models = (project.data or {}).get("models") if project and isinstance(project.data, dict) else None
    config = next(iter(models.values()), {}) if isinstance(models, dict) and models else {}
    schema = config.get("+schema") if isinstance(config, dict) else None
    entries = (properties.data or {}).get("models") if properties and isinstance(properties.data, dict) else None
    if not isinstance(schema, str) or not isinstance(entries, list):
        return set()
    out: set[Relation] = set()
    for model in entries:
        if not isinstance(model, dict):
            continue
        for item in model.get("versions") or [model]:
            alias = (item.get("config") or {}).get("alias") if isinstance(item, dict) else None
            if isinstance(alias, str):
                out.add((schema, alias))
    return out


def retire(domain: Domain, allowed: set[Relation]) -> Ledger:
    """Retire every relation stitched before that is not allowed any more (to be dropped from each storage);
    written, when that changes anything, before the stubs change."""
    ledger = load_ledger(domain)
    before = (set(ledger.stitched), {r: set(d) for r, d in ledger.retired.items()})
    known = ledger.stitched | installed_relations(domain)
    for relation in known - allowed:
        ledger.retired.setdefault(relation, set())
    for relation in allowed:  # access given back: the stub's view is the domain's again
        ledger.retired.pop(relation, None)
    ledger.stitched = known & allowed
    if (ledger.stitched, ledger.retired) != before:
        save_ledger(domain, ledger)
    return ledger


def record(domain: Domain, ledger: Ledger, stitched: set[Relation]) -> None:
    """Record the relations the stubs about to be installed declare (before they are: a stitch killed
    between the two still knows what it may have made)."""
    if stitched - ledger.stitched:
        ledger.stitched |= stitched
        save_ledger(domain, ledger)


def remove_revoked_stubs(domain: Domain, manifests: dict[str, Manifest]) -> list[str]:
    """Delete the stub packages that still offer a product the domain may no longer read (a stitch that
    stops on a problem writes no new stubs, and a hand `dbt build` must not make their views again)."""
    removed = []
    folder = domain.packages_dir
    if not folder.is_dir():
        return removed
    for entry in sorted(folder.iterdir()):
        marker = read_marker(entry) if entry.is_dir() and not entry.is_symlink() else None
        if not marker or marker.get("runtime") or not marker.get("upstream"):
            continue
        manifest = manifests.get(str(marker["upstream"]))
        allowed = {n.unique_id for n in manifest.for_consumer(domain.name).public()} if manifest else set()
        if set(map(str, marker.get("models") or [])) - allowed:
            shutil.rmtree(entry)
            removed.append(entry.name)
    return removed


def drop_retired(domain: Domain, ledger: Ledger, target: str | None, profiles_dir: Path | None) -> list[str]:
    """Drop the retired stub views still in the storage ``target`` builds into; "schema.view" of each dropped.

    MeshError (with what to do) when the storage cannot be changed now: the views stay recorded and the
    next stitch tries again."""
    from mesh_tools.dbt import profiles
    from mesh_tools.dbt.engines import duckdb as duckdb_engine

    if not ledger.retired:
        return []
    profile = profiles.load_profile(domain.path, target, profiles_dir)
    if profile.adapter != duckdb_engine.NAME or profile.storage is None:
        return []  # a warehouse revokes grants instead; a storage elsewhere (md:, s3) is not opened here
    storage = str(profile.storage)
    pending = ledger.pending(storage)
    if not pending:
        return []
    dropped: list[Relation] = []
    if profile.storage.exists():  # none yet: nothing in it to drop
        try:
            dropped = drop_views(domain, pending, target, profiles_dir)
        except MeshError as exc:
            names = ", ".join(f"{s}.{v}" for s, v in pending)
            raise MeshError(
                f"{domain.name} may no longer read {names}, and their views in {display_path(profile.storage)} "
                f"could not be dropped: {exc}. Close what holds the database and run again: the mesh drops them "
                "at the domain's next stitch or build."
            ) from None
    for relation in pending:
        ledger.retired[relation].add(storage)
    save_ledger(domain, ledger)
    return [f"{s}.{v}" for s, v in dropped]


def drop_views(
    domain: Domain, relations: list[tuple[str, str]], target: str | None, profiles_dir: Path | None
) -> list[tuple[str, str]]:
    """Drop the views among ``relations`` (schema, name) in the domain's own storage; the ones dropped.

    The runtime package runs as the dbt project, with the domain's profile and target, so the domain's
    own project need not parse: a consumer whose models still ref a product it may no longer read does
    not, and must lose that product's view all the same. Relative paths in the profile resolve against
    the working directory, which must be the domain's folder (a worker's, see workflows/domain_run.py).
    DbtError when dbt cannot (the storage locked by another process, ...).
    """
    from mesh_tools.core.errors import DbtError
    from mesh_tools.dbt import runner
    from mesh_tools.dbt.profiles import profiles_dir_for
    from mesh_tools.dbt.runtime import RESULT_PREFIX, RUNTIME_PACKAGE, install_runtime

    if not relations:
        return []
    if Path.cwd().resolve() != domain.path.resolve():
        raise DbtError(f"stub views of {domain.name} are dropped from a worker in its folder, not {Path.cwd()}")
    install_runtime(domain)
    found: list[str] = []

    def capture(message: str) -> None:
        if message.startswith(RESULT_PREFIX):
            found.append(message[len(RESULT_PREFIX) :])

    scratch = domain.target_dir / "mesh_runtime"  # dbt's own files of this run, never in the package folder
    command = [
        "run-operation", f"{RUNTIME_PACKAGE}.drop_views", "--args", json.dumps({"relations": relations}),
        "--no-write-json", "--profile", str(domain.profile or domain.name), "--target-path", str(scratch),
        "--log-path", str(scratch),
    ]  # fmt: skip
    outcome = runner.invoke(
        domain.packages_dir / RUNTIME_PACKAGE, command, target=target,
        profiles_dir=profiles_dir_for(domain.path, profiles_dir), on_message=capture,
    )  # fmt: skip
    if not outcome.success or not found:
        raise DbtError(" ".join((outcome.exception or "; ".join(outcome.errors[-3:]) or "no result").split()))
    return [(str(a), str(b)) for a, b in json.loads(found[-1])]
