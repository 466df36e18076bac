"""dbt's artifacts, read once into typed, indexed objects: a manifest and a build's run results.

One reading policy for every command: a missing artifact is an ArtifactError, or None where
the caller says ``missing_ok`` ("not built yet" is a state there); a corrupt or malformed one is
always an ArtifactError naming the file and what to do.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from mesh_tools.core.errors import ArtifactError, display_path
from mesh_tools.core.jsonfile import TooLarge, read_artifact_text
from mesh_tools.model.nodes import SHAREABLE, Node, NodeId, resource_type_of, stub_id


def read_json(path: Path, what: str, fix: str, required: tuple[str, ...] = ()) -> Any:
    """Parse a JSON artifact, or raise one ArtifactError naming the file and what to do.

    ``required``: keys the artifact must hold (with their type, for the keys of its shape).
    """
    deadline = time.monotonic() + _WRITING_WAIT
    while True:
        read_at = _stamp(path)
        try:
            data = json.loads(read_artifact_text(path))  # dbt-loom reads gzip-compressed manifests too (capped)
            break
        except FileNotFoundError:
            raise ArtifactError(f"{display_path(path)}: {what} not found. {fix}") from None
        except TooLarge as exc:
            raise ArtifactError(f"{display_path(path)}: {what} not read: it {exc}. {fix}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            if _written_since(path, read_at, deadline):
                continue  # a dbt run outside the mesh was writing it (dbt writes in place): read it again
            if isinstance(exc, UnicodeDecodeError):
                raise ArtifactError(f"{display_path(path)}: cannot read {what} ({exc}). {fix}") from None
            raise ArtifactError(
                f"{display_path(path)}:{exc.lineno}:{exc.colno}: {what} is corrupt ({exc.msg}). {fix}"
            ) from None
        except (OSError, EOFError) as exc:
            raise ArtifactError(f"{display_path(path)}: cannot read {what} ({exc}). {fix}") from None
        except RecursionError:
            raise ArtifactError(f"{display_path(path)}: {what} is nested too deeply to read. {fix}") from None
    problem = _shape_problem(data, _SHAPES.get(what, {}))
    if problem:
        raise ArtifactError(f"{display_path(path)}: not a dbt {what}: {problem}. {fix}")
    for key in required:
        if not isinstance(data, dict) or not isinstance(data.get(key), _SHAPES.get(what, {}).get(key, object)):
            raise ArtifactError(f"{display_path(path)}: not dbt {what} (no '{key}'). {fix}")
    return data


_WRITING_WAIT = 3.0  # seconds a reader waits for an artifact that is being written to be whole
_QUIET = 0.3  # seconds without a change after which a file being written is taken as written


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


def _written_since(path: Path, read_at: tuple[int, int] | None, deadline: float) -> bool:
    """Whether a file that did not parse was being written and has been written since it was read (``read_at``:
    its size and time then): read it again.

    A hand-run dbt (or a dbt older than dbt/runner.py's whole writes) writes an artifact in place, so a reader can
    catch half of it. A file changed within the last moments is waited for until it has been quiet for
    ``_QUIET`` seconds, at most until ``deadline``. A file that did not change is corrupt as it stands.
    """
    last = _stamp(path)
    if last is None or read_at is None or time.time() - last[1] / 1e9 > _QUIET * 2:
        return last != read_at and time.monotonic() < deadline  # not written lately
    quiet_since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < _QUIET:
        time.sleep(0.05)
        now = _stamp(path)
        if now != last:
            last, quiet_since = now, time.monotonic()
    return last != read_at


# The parts of dbt's artifacts the mesh reads, and the JSON type each must have.
_SHAPES: dict[str, dict[str, type]] = {
    "manifest": {
        "metadata": dict,
        "nodes": dict,
        "sources": dict,
        "groups": dict,
        "unit_tests": dict,
        "macros": dict,
        "child_map": dict,
        "parent_map": dict,
        "exposures": dict,
    },
    "run results": {"metadata": dict, "results": list, "args": dict},
    "catalog": {"nodes": dict, "sources": dict},
}


def _shape_problem(data: Any, shape: dict[str, type]) -> str | None:
    """Why ``data`` is not an artifact of that shape (a mapping whose known keys have their types)."""
    if not shape:
        return None
    if not isinstance(data, dict):
        return f"the file holds a {type(data).__name__}, not an object"
    for key, kind in shape.items():
        value = data.get(key)
        if value is not None and not isinstance(value, kind):
            return f"'{key}' is a {type(value).__name__}, not {'an object' if kind is dict else 'a list'}"
        if kind is dict and isinstance(value, dict) and key in ("nodes", "sources", "groups", "unit_tests", "macros"):
            bad = next((k for k, v in value.items() if not isinstance(v, dict)), None)
            if bad is not None:
                return f"'{key}.{str(bad)[:80]}' is not an object"
    if isinstance(data.get("results"), list) and any(not isinstance(r, dict) for r in data["results"]):
        return "an entry of 'results' is not an object"
    return None


def owner_label(owner: dict[str, Any] | None) -> str:
    """A dbt group's owner as people read it: ``Name <email>``, or whichever of the two is set."""
    owner = owner or {}
    name, email = owner.get("name"), owner.get("email")
    return f"{name} <{email}>" if name and email else str(name or email or "")


class Manifest:
    """One project's manifest.json: every node typed, with the indexes features need."""

    def __init__(
        self, data: dict[str, Any], path: Path, project: str | None = None, hidden: frozenset[str] = frozenset()
    ):
        self.path = path
        self._data = data
        self.metadata: dict[str, Any] = data.get("metadata") or {}
        self.project = project or str(self.metadata.get("project_name") or "")
        self._hidden = hidden  # models left out of ``models`` (dbt-loom's package filters, a consumer's policy)

    # -- reading
    @classmethod
    def read(
        cls, path: Path, project: str | None = None, fix: str = "", *, missing_ok: bool = False,
        excluded: tuple[str, ...] = (), included: tuple[str, ...] = (), required: tuple[str, ...] = (),
    ) -> Manifest | None:  # fmt: skip
        """The manifest at ``path``; None when it does not exist and ``missing_ok``.

        ``excluded`` / ``included`` are dbt-loom's package filters: when they leave the project
        out, none of its models is read. ``required``: keys it must hold (``nodes``...).
        """
        if missing_ok and not path.is_file():
            return None
        label = project or path.parent.parent.name
        fix = fix or f"Parse or build the domain first: `mesh build {label}`."
        data = read_json(path, "manifest", fix, required)
        return cls.filtered(data, path, project, fix, excluded=excluded, included=included)

    @classmethod
    def filtered(
        cls, data: dict[str, Any], path: Path, project: str | None, fix: str, *,
        excluded: tuple[str, ...] = (), included: tuple[str, ...] = (),
    ) -> Manifest:  # fmt: skip
        """A manifest already read from ``path`` (or a published interface, which has a manifest's shape), with
        dbt-loom's package filters applied; ArtifactError when it is another project's."""
        manifest = cls(data, path, project)
        name = manifest.metadata.get("project_name")
        if project is not None and name is not None and name != project:
            raise ArtifactError(f"{display_path(path)}: manifest belongs to project '{name}', not '{project}'. {fix}")
        if project is not None and (project in excluded or (included and project not in included)):
            manifest = cls(data, path, project, frozenset(manifest.nodes))
        return manifest

    @classmethod
    def load(cls, path: Path, project: str, fix: str = "", **filters: Any) -> Manifest:
        """The manifest at ``path``, which must exist (ArtifactError naming it and ``fix`` otherwise)."""
        manifest = cls.read(path, project, fix or f"Rebuild it with `mesh build {project}`.", **filters)
        assert manifest is not None
        return manifest

    @classmethod
    def of(cls, data: dict[str, Any], project: str | None = None) -> Manifest:
        """A manifest from its JSON already in memory (tests, rule helpers)."""
        return cls(data, Path("manifest.json"), project)

    # -- metadata
    @property
    def invocation_id(self) -> str | None:
        return self.metadata.get("invocation_id")

    @property
    def adapter(self) -> str | None:
        return self.metadata.get("adapter_type")

    @property
    def dbt_version(self) -> str | None:
        return self.metadata.get("dbt_version")

    @property
    def generated_at(self) -> str:
        return str(self.metadata.get("generated_at") or "")

    # -- nodes
    @cached_property
    def nodes(self) -> dict[str, Node]:
        return {uid: Node(uid, raw) for uid, raw in (self._data.get("nodes") or {}).items()}

    @cached_property
    def sources(self) -> dict[str, Node]:
        return {uid: Node(uid, raw) for uid, raw in (self._data.get("sources") or {}).items()}

    @cached_property
    def unit_tests(self) -> dict[str, Node]:
        return {uid: Node(uid, raw) for uid, raw in (self._data.get("unit_tests") or {}).items()}

    @cached_property
    def macros(self) -> dict[str, Node]:
        return {uid: Node(uid, raw) for uid, raw in (self._data.get("macros") or {}).items()}

    @cached_property
    def functions(self) -> dict[str, Node]:
        """dbt 1.11's user-defined functions (``function.<project>.<name>``), which models call by name."""
        raw = self._data.get("functions")
        return {uid: Node(uid, f) for uid, f in raw.items() if isinstance(f, dict)} if isinstance(raw, dict) else {}

    @cached_property
    def exposures(self) -> dict[str, Node]:
        return {uid: Node(uid, raw) for uid, raw in (self._data.get("exposures") or {}).items()}

    @cached_property
    def groups(self) -> dict[str, dict[str, Any]]:
        """The project's own groups by name."""
        return {
            str(g.get("name")): g
            for g in (self._data.get("groups") or {}).values()
            if not self.project or g.get("package_name") == self.project
        }

    # -- the project's models, and what other projects can ref (what stitching and adoption read)
    @cached_property
    def models(self) -> tuple[Node, ...]:
        """The project's own models, one per version (hidden ones left out)."""
        return tuple(n for n in self.own("model") if n.unique_id not in self._hidden)

    @cached_property
    def shareable(self) -> tuple[Node, ...]:
        """The project's own nodes another project can ref (models one per version, seeds, snapshots), hidden
        ones left out."""
        return tuple(n for n in self.own_shareable() if n.unique_id not in self._hidden)

    def public(self) -> list[Node]:
        """What the project shares: its public models, seeds and snapshots."""
        return [m for m in self.shareable if m.is_public]

    def named(self, name: str) -> list[Node]:
        """The node(s) ``ref(project, name)`` can name: a model (one per version), a seed or a snapshot."""
        return [m for m in self.shareable if m.name == name]

    def for_consumer(self, consumer: str) -> Manifest:
        """This manifest without the products ``consumer`` may not read (``meta.allowed_consumers``)."""
        hidden = {m.unique_id for m in self.shareable if m.is_public and not m.readable_by(consumer)}
        return Manifest(self._data, self.path, self.project, self._hidden | hidden)

    def owner_of(self, node: Node) -> str:
        """The owner of the node's group, as people read it (``Name <email>``)."""
        return owner_label(self.owner(node))

    def node(self, unique_id: str) -> Node | None:
        return self.nodes.get(unique_id) or self.sources.get(unique_id) or self.unit_tests.get(unique_id)

    def own(self, resource_type: str = "model", project: str | None = None) -> Iterator[Node]:
        """The project's own nodes of a type (installed packages and upstream stubs left out)."""
        package = project or self.project
        for node in self.nodes.values():
            if node.resource_type == resource_type and node.package == package:
                yield node

    def own_shareable(self, project: str | None = None) -> Iterator[Node]:
        """The project's own models, seeds and snapshots: what another project can ref."""
        package = project or self.project
        return (n for n in self.nodes.values() if n.resource_type in SHAREABLE and n.package == package)

    def shared_node(self, unique_id: str) -> Node | None:
        """The node of this project a consumer's read of ``unique_id`` names: the node itself, or the seed or
        snapshot behind a stub's model id (``model.revenue.integers`` for ``seed.revenue.integers``)."""
        node = self.nodes.get(unique_id)
        if node is not None or resource_type_of(unique_id) != "model":
            return node
        return next(
            (n for n in self.own_shareable() if n.resource_type != "model" and stub_id(n.unique_id) == unique_id), None
        )

    def own_sources(self) -> Iterator[Node]:
        return (s for s in self.sources.values() if s.package == self.project)

    def products(self, project: str | None = None) -> list[Node]:
        """The project's data products: its own public models (one per version), seeds and snapshots."""
        return [n for n in self.own_shareable(project) if n.is_public]

    def models_named(self, name: str, project: str | None = None) -> list[Node]:
        return [n for n in self.own("model", project) if n.name == name]

    def owner(self, node: Node) -> dict[str, Any]:
        group = self.groups.get(node.group or "")
        return dict((group or {}).get("owner") or {})

    # -- indexes
    @cached_property
    def _tests_by_parent(self) -> dict[str, list[Node]]:
        out: dict[str, list[Node]] = {}
        for node in list(self.nodes.values()) + list(self.unit_tests.values()):
            if node.resource_type in ("test", "unit_test"):
                for parent in node.depends_on:
                    out.setdefault(parent, []).append(node)
        return out

    def tests_of(self, unique_id: str, *, data_only: bool = False) -> list[Node]:
        """The tests attached to a node: its data tests, and its unit tests unless ``data_only``."""
        tests = self._tests_by_parent.get(unique_id, [])
        return [t for t in tests if t.resource_type == "test"] if data_only else list(tests)

    @cached_property
    def _children(self) -> dict[str, list[str]]:
        child_map = self._data.get("child_map")
        if isinstance(child_map, dict) and child_map:
            return {k: [str(c) for c in v] for k, v in child_map.items() if isinstance(v, list)}
        out: dict[str, list[str]] = {}
        for node in self.nodes.values():
            for parent in node.depends_on:
                out.setdefault(parent, []).append(node.unique_id)
        return out

    def children(self, unique_id: str) -> list[str]:
        return list(self._children.get(unique_id, []))

    def foreign_reads(self) -> Iterator[tuple[Node, str]]:
        """(own node, upstream unique_id) for every read of another project's model, seed or snapshot (a stub of
        one is a model)."""
        for node in list(self.nodes.values()) + list(self.unit_tests.values()):
            if node.package != self.project:
                continue
            for parent in node.depends_on:
                read = NodeId.read(parent)
                if read is not None and read.is_shareable and read.package != self.project:
                    yield node, parent


@dataclass(frozen=True)
class NodeResult:
    unique_id: str
    status: str
    message: str | None
    execution_time: float
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def failures(self) -> int | None:
        """Rows a test found failing (None for other nodes)."""
        return self.raw.get("failures")

    @property
    def completed_at(self) -> str | None:
        """When dbt finished the node (its last timing step), as dbt wrote it."""
        timing = self.raw.get("timing")
        last = timing[-1] if isinstance(timing, list) and timing else None
        return last.get("completed_at") if isinstance(last, dict) else None


@dataclass(frozen=True)
class RunResults:
    """One dbt invocation's run_results.json."""

    path: Path
    metadata: dict[str, Any]
    args: dict[str, Any]
    results: tuple[NodeResult, ...]
    elapsed_time: float | None = None

    @classmethod
    def read(
        cls, path: Path, fix: str = "Run `dbt build` again.", *, missing_ok: bool = False,
        required: tuple[str, ...] = (),
    ) -> RunResults | None:  # fmt: skip
        """The run results at ``path``; None when missing and ``missing_ok``. ``required``: keys it must hold."""
        if missing_ok and not path.is_file():
            return None
        data = read_json(path, "run results", fix, required)
        try:
            results = tuple(
                NodeResult(
                    str(r["unique_id"]), str(r["status"]), r.get("message"), float(r.get("execution_time") or 0), r
                )  # fmt: skip
                for r in data.get("results") or []
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{display_path(path)}: not dbt run results (missing {exc}). {fix}") from None
        elapsed = data.get("elapsed_time")
        return cls(path, data.get("metadata") or {}, data.get("args") or {}, results,
                   float(elapsed) if isinstance(elapsed, int | float) else None)  # fmt: skip

    @property
    def invocation_id(self) -> str | None:
        return self.metadata.get("invocation_id")

    @property
    def generated_at(self) -> str | None:
        return self.metadata.get("generated_at")

    @property
    def started_at(self) -> str | None:
        """When the invocation started (``invocation_started_at``, dbt 1.8+)."""
        return self.metadata.get("invocation_started_at")

    @property
    def dbt_version(self) -> str | None:
        return self.metadata.get("dbt_version")

    @property
    def command(self) -> str | None:
        """The dbt command (``build``, ``run``, ``test``, ...)."""
        return self.args.get("which")

    @cached_property
    def by_id(self) -> dict[str, NodeResult]:
        return {r.unique_id: r for r in self.results}

    def status_of(self, unique_id: str) -> str | None:
        result = self.by_id.get(unique_id)
        return result.status if result else None

    def count(self, statuses: Iterable[str], resource_types: Iterable[str] | None = None) -> int:
        wanted, kinds = set(statuses), set(resource_types or ())
        return sum(
            1 for r in self.results if r.status in wanted and (not kinds or resource_type_of(r.unique_id) in kinds)
        )


@dataclass(frozen=True)
class Catalog:
    """A project's catalog.json (`dbt docs generate`): the columns and types the warehouse reports."""

    path: Path
    nodes: dict[str, Any]

    @classmethod
    def read(cls, path: Path, fix: str) -> Catalog:
        data = read_json(path, "catalog", fix)
        return cls(path, data.get("nodes") or {})

    def columns_of(self, unique_id: str) -> dict[str, Any]:
        """The node's columns by name (each with ``type``), empty when the catalog does not have it."""
        node = self.nodes.get(unique_id)
        columns = node.get("columns") if isinstance(node, dict) else None
        return columns if isinstance(columns, dict) else {}
