"""Revocation: a consumer loses, in its own storage, the stub views of the products it may no longer read.

A product it may no longer read: its producer restricted it (``meta.allowed_consumers``), the consumer
dropped the dependency, the product or one of its versions is gone. Its view would go on returning the
release it was stitched to. The mesh records every stub relation it stitched for the domain (the ledger,
in the domain's target folder, written before the stubs change) and, once one is retired, which storages
it was dropped from. Only those relations, and only when they are views the mesh marked as its stub views,
are ever dropped: what the domain's team made itself, even in an ``upstream_<project>`` schema, is never
touched. Nor is it ever replaced: before a stub first names a relation in a storage, the storage is asked
(``claim``), and a relation of that name without the mark (a table, a view of the team's) refuses the stitch.

DuckDB storages are cleaned here. On a warehouse (PostgreSQL) the producer revokes the grants at its
next publish or ``mesh grants``, and a stale view there reads nothing.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mesh_tools.core.errors import MeshError, display_path
from mesh_tools.core.files import write_atomic
from mesh_tools.core.jsonfile import loads
from mesh_tools.core.mesh import Domain
from mesh_tools.core.yamlfile import load_yaml
from mesh_tools.dbt.packages import read_marker
from mesh_tools.model.manifest import Manifest
from mesh_tools.stitch.stub import STUB_MARK, stub_name, stub_schema

LEDGER = "mesh_stub_relations.json"
Relation = tuple[str, str]  # (schema as the stub names it, view)


@dataclass
class Ledger:
    """What the mesh stitched into a domain's storage, and what it retired from it."""

    stitched: set[Relation] = field(default_factory=set)
    retired: dict[Relation, set[str]] = field(default_factory=dict)  # relation -> storages it was dropped from
    # storage (``_storage_key``) -> the relations found free there (or the mesh's own) before a stub named them
    checked: dict[str, set[Relation]] = field(default_factory=dict)
    # recorded before stub views carried STUB_MARK: any view of that name counts as the mesh's, as it did then
    legacy: set[Relation] = field(default_factory=set)

    def pending(self, storage: str) -> list[Relation]:
        return sorted(r for r, done in self.retired.items() if storage not in done)


def ledger_path(domain: Domain) -> Path:
    return domain.target_dir / LEDGER


def load_ledger(domain: Domain) -> Ledger:
    """The domain's ledger; an unreadable one counts as empty (the installed stubs seed it again)."""
    try:
        data = loads(ledger_path(domain).read_text(encoding="utf-8"))
        stitched = {(str(s), str(v)) for s, v in data.get("stitched", [])}
        retired = {(str(s), str(v)): {str(x) for x in done} for s, v, done in data.get("retired", [])}
        if "checked" not in data:  # written before stub views were marked: what it names keeps the old rule
            return Ledger(stitched, retired, {}, stitched | set(retired))
        checked = {str(k): {(str(s), str(v)) for s, v in items} for k, items in data["checked"].items()}
        legacy = {(str(s), str(v)) for s, v in data.get("legacy", [])}
        return Ledger(stitched, retired, checked, legacy)
    except (OSError, ValueError, TypeError, AttributeError):
        return Ledger()


def save_ledger(domain: Domain, ledger: Ledger) -> None:
    data = {
        "stitched": sorted(ledger.stitched),
        "retired": [[s, v, sorted(done)] for (s, v), done in sorted(ledger.retired.items())],
        "checked": {storage: sorted(items) for storage, items in sorted(ledger.checked.items())},
        "legacy": sorted(ledger.legacy),
    }
    domain.target_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(ledger_path(domain), json.dumps(data, indent=2) + "\n")


def product_relations(domain: Domain, manifests: dict[str, Manifest]) -> dict[Relation, str]:
    """The stub relations the domain may have now, each with its product: every product of a declared upstream
    it may read (as ``stub.stub_files`` names them: the upstream's stub schema, the model's name and version)."""
    relations: dict[Relation, str] = {}
    for up in domain.upstreams:
        manifest = manifests.get(up.name)
        if manifest is None:
            continue
        schema = stub_schema(manifest.project)
        relations |= {(schema, stub_name(n)): n.key for n in manifest.for_consumer(domain.name).public()}
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
    config: object = next(iter(models.values()), {}) if isinstance(models, dict) and models else {}
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
        for checked in ledger.checked.values():  # allowed again one day: its storages are asked again
            checked.discard(relation)
    for relation in allowed:  # access given back: the stub's view is the domain's again
        ledger.retired.pop(relation, None)
    ledger.stitched = known & allowed
    if (ledger.stitched, ledger.retired) != before:
        save_ledger(domain, ledger)
    return ledger


def claim(
    domain: Domain, ledger: Ledger, relations: dict[Relation, str], target: str | None, profiles_dir: Path | None
) -> list[str]:
    """Before the stubs first name a relation in the storage ``target`` builds into, ask the storage: one
    message per relation of that name the mesh did not make (one without ``STUB_MARK``: a table, a view of the
    team's), which the stub's view would replace. None: the relations are recorded as checked there (written
    before the stubs).

    ``relations``: relation -> the product its stub view serves. Only relations new to the ledger for that
    storage are looked up (one dbt run-operation, only when there are some), and only in a DuckDB file."""
    from mesh_tools.dbt import engines, profiles

    profile = profiles.load_profile(domain.path, target, profiles_dir)
    engine = engines.find_engine(profile.adapter)
    if engine is None or not engine.local_stub_views or profile.storage is None:
        return []  # a warehouse or a storage elsewhere (md:, s3) is not opened here
    storage = _storage_key(domain, profile.storage)
    new = sorted(set(relations) - ledger.checked.get(storage, set()))
    if not new:
        return []
    found: dict[Relation, tuple[str, str | None]] = {}
    if profile.storage.exists():  # none yet: nothing in it to replace
        try:
            rows = _run_runtime(domain, "stub_relations", {"schemas": sorted({s for s, _ in new})}, target,
                                profiles_dir)  # fmt: skip
        except MeshError as exc:
            return [
                f"{display_path(profile.storage)}: {domain.name} would make the stub views "
                f"{', '.join(f'{s}.{v}' for s, v in new)} there and could not first check that nothing else has "
                f"their names: {exc}. Close what holds the database and run again."
            ]
        found = {
            (str(s).lower(), str(v).lower()): (str(kind), comment if isinstance(comment, str) else None)
            for s, v, kind, comment in rows
        }
    problems = []
    for relation in new:
        kind, comment = found.get((relation[0].lower(), relation[1].lower()), (None, None))
        if kind is None or _marked(comment) or (kind == "view" and relation in ledger.legacy):
            continue  # free, or the mesh's (a stub a consumer materializes as a table carries the mark too)
        what = f"a {kind} without the mark of the mesh's stub views"
        schema, name = relation
        problems.append(
            f"{display_path(profile.storage)}: {schema}.{name} is {what}, which the mesh did not make, and the stub "
            f"view of {relations[relation]} that stitching {domain.name} makes would replace it. The mesh never "
            f"replaces what it did not make: rename it or move it out of schema {schema} (if it is a stub view an "
            "older mesh made, drop it: the build makes it again), then run again."
        )
    if problems:
        return problems
    ledger.checked.setdefault(storage, set()).update(new)
    save_ledger(domain, ledger)
    return []


def _storage_key(domain: Domain, storage: Path) -> str:
    """A storage as the ledger names it: relative to the domain's folder when inside it (a copied or moved
    domain takes its database file and its record along), else absolute."""
    try:
        return storage.resolve().relative_to(domain.path.resolve()).as_posix()
    except ValueError:
        return str(storage)


def _marked(comment: object) -> bool:
    return isinstance(comment, str) and comment.startswith(STUB_MARK)


def record(domain: Domain, ledger: Ledger, stitched: set[Relation]) -> None:
    """Record the relations the stubs about to be installed declare (before they are: a stitch killed
    between the two still knows what it may have made)."""
    if stitched - ledger.stitched:
        ledger.stitched |= stitched
        save_ledger(domain, ledger)


def remove_revoked_stubs(domain: Domain, manifests: dict[str, Manifest]) -> list[str]:
    """Delete the stub packages that still offer a product the domain may no longer read (a stitch that
    stops on a problem writes no new stubs, and a hand `dbt build` must not make their views again)."""
    removed: list[str] = []
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
    from mesh_tools.dbt import engines, profiles

    if not ledger.retired:
        return []
    profile = profiles.load_profile(domain.path, target, profiles_dir)
    engine = engines.find_engine(profile.adapter)
    if engine is None or not engine.local_stub_views or profile.storage is None:
        return []  # a warehouse revokes grants instead; a storage elsewhere (md:, s3) is not opened here
    storage = str(profile.storage)
    pending = ledger.pending(storage)
    if not pending:
        return []
    dropped: list[Relation] = []
    if profile.storage.exists():  # none yet: nothing in it to drop
        try:
            dropped = drop_views(domain, pending, target, profiles_dir, [r for r in pending if r in ledger.legacy])
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
    domain: Domain, relations: list[tuple[str, str]], target: str | None, profiles_dir: Path | None,
    legacy: list[tuple[str, str]] | None = None,
) -> list[tuple[str, str]]:  # fmt: skip
    """Drop the stub views among ``relations`` (schema, name) in the domain's own storage; the ones dropped.

    A view is dropped only if it carries ``STUB_MARK`` (or is among ``legacy``: recorded before stub views
    were marked); a table, or a view of the team's, never. DbtError when dbt cannot (the storage locked by
    another process, ...).
    """
    if not relations:
        return []
    args = {"relations": relations, "legacy": legacy or [], "mark": STUB_MARK}
    return [(str(a), str(b)) for a, b in _run_runtime(domain, "drop_views", args, target, profiles_dir)]


def _run_runtime(domain: Domain, macro: str, args: Mapping[str, object], target: str | None,
                 profiles_dir: Path | None) -> list[list[object]]:  # fmt: skip
    """Run a macro of the runtime package on the domain's own storage; what it reported.

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

    if Path.cwd().resolve() != domain.path.resolve():
        raise DbtError(f"the storage of {domain.name} is read from a worker in its folder, not {Path.cwd()}")
    install_runtime(domain)
    found: list[str] = []

    def capture(message: str) -> None:
        if message.startswith(RESULT_PREFIX):
            found.append(message[len(RESULT_PREFIX) :])

    scratch = domain.target_dir / "mesh_runtime"  # dbt's own files of this run, never in the package folder
    command = [
        "run-operation", f"{RUNTIME_PACKAGE}.{macro}", "--args", json.dumps(args),
        "--no-write-json", "--profile", str(domain.profile or domain.name), "--target-path", str(scratch),
        "--log-path", str(scratch),
    ]  # fmt: skip
    outcome = runner.invoke(
        domain.packages_dir / RUNTIME_PACKAGE, command, target=target,
        profiles_dir=profiles_dir_for(domain.path, profiles_dir), on_message=capture,
    )  # fmt: skip
    if not outcome.success or not found:
        raise DbtError(" ".join((outcome.exception or "; ".join(outcome.errors[-3:]) or "no result").split()))
    result = json.loads(found[-1])
    return list(result) if isinstance(result, list) else []
