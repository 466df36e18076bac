"""Read dbt's JSON artifacts (manifest.json, run_results.json) into small typed records."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh_tools.core.errors import ArtifactError, display_path


@dataclass(frozen=True)
class ModelNode:
    """One model (one version of a versioned model) as its project's manifest describes it."""

    unique_id: str
    name: str
    version: str | None
    latest_version: str | None
    access: str
    group: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def is_public(self) -> bool:
        return self.access == "public"

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}" if self.version is not None else self.name

    @property
    def allowed_consumers(self) -> list[str] | None:
        """The only domains that may read this product (``meta.allowed_consumers``), or None: any domain.

        Anything but a list of names restricts it to no one: a policy written wrong never opens a product.
        """
        meta = {**(self.raw.get("meta") or {}), **((self.raw.get("config") or {}).get("meta") or {})}
        if "allowed_consumers" not in meta or meta["allowed_consumers"] is None:
            return None
        value = meta["allowed_consumers"]
        return [str(v) for v in value if isinstance(v, str)] if isinstance(value, list) else []

    def readable_by(self, consumer: str) -> bool:
        allowed = self.allowed_consumers
        return allowed is None or consumer in allowed


@dataclass(frozen=True)
class ProjectManifest:
    """The models and groups of one project, read from its manifest.json."""

    project: str
    path: Path
    generated_at: str
    models: tuple[ModelNode, ...]
    groups: dict[str, dict[str, Any]]
    version: str | None = None

    def named(self, name: str) -> list[ModelNode]:
        return [m for m in self.models if m.name == name]

    def public(self) -> list[ModelNode]:
        return [m for m in self.models if m.is_public]

    def for_consumer(self, consumer: str) -> ProjectManifest:
        """This manifest without the products ``consumer`` may not read (``meta.allowed_consumers``)."""
        from dataclasses import replace

        return replace(self, models=tuple(m for m in self.models if not m.is_public or m.readable_by(consumer)))

    def owner_of(self, node: ModelNode) -> str:
        group = self.groups.get(node.group or "")
        return owner_label((group or {}).get("owner"))


def owner_label(owner: dict[str, Any] | None) -> str:
    """A dbt group's owner as people read it: ``Name <email>``, or whichever of the two is set."""
    owner = owner or {}
    name, email = owner.get("name"), owner.get("email")
    return f"{name} <{email}>" if name and email else str(name or email or "")


def public_model_nodes(project: str, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The project's own public models (one per version) as raw manifest nodes: its data products."""
    return [
        node
        for node in manifest.get("nodes", {}).values()
        if node.get("resource_type") == "model"
        and node.get("package_name") == project
        and node.get("access") == "public"
    ]


def _version(value: Any) -> str | None:
    return None if value is None else str(value)


def read_json(path: Path, what: str, fix: str) -> Any:
    """Parse a JSON artifact, or raise one ArtifactError naming the file and what to do."""
    try:
        if path.suffix == ".gz":  # dbt-loom reads gzip-compressed manifests too
            import gzip

            text = gzip.decompress(path.read_bytes()).decode("utf-8")
        else:
            text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ArtifactError(f"{display_path(path)}: {what} not found. {fix}") from None
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{display_path(path)}: cannot read {what} ({exc}). {fix}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArtifactError(
            f"{display_path(path)}:{exc.lineno}:{exc.colno}: {what} is corrupt ({exc.msg}). {fix}"
        ) from None
    except RecursionError:
        raise ArtifactError(f"{display_path(path)}: {what} is nested too deeply to read. {fix}") from None
    problem = _shape_problem(data, _SHAPES.get(what, {}))
    if problem:
        raise ArtifactError(f"{display_path(path)}: not a dbt {what}: {problem}. {fix}")
    return data


# The parts of dbt's artifacts the mesh reads, and the JSON type each must have.
_SHAPES: dict[str, dict[str, type]] = {
    "manifest": {
        "metadata": dict,
        "nodes": dict,
        "sources": dict,
        "groups": dict,
        "unit_tests": dict,
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
        if kind is dict and isinstance(value, dict) and key in ("nodes", "sources", "groups", "unit_tests"):
            bad = next((k for k, v in value.items() if not isinstance(v, dict)), None)
            if bad is not None:
                return f"'{key}.{str(bad)[:80]}' is not an object"
    if isinstance(data.get("results"), list) and any(not isinstance(r, dict) for r in data["results"]):
        return "an entry of 'results' is not an object"
    return None


def load_manifest(
    path: Path, project: str, fix: str = "", *, excluded: tuple[str, ...] = (), included: tuple[str, ...] = ()
) -> ProjectManifest:
    """Read the models of ``project`` from a manifest.json written by dbt.

    ``excluded`` / ``included`` are dbt-loom's package filters: when they leave the project out,
    none of its models is read.
    """
    fix = fix or f"Rebuild it with `mesh build {project}`."
    data = read_json(path, "manifest", fix)
    try:
        nodes = data["nodes"]
        metadata = data.get("metadata", {})
        name = metadata.get("project_name")
        if name is not None and name != project:
            raise ArtifactError(f"{display_path(path)}: manifest belongs to project '{name}', not '{project}'. {fix}")
        models = tuple(
            ModelNode(
                unique_id=uid,
                name=node["name"],
                version=_version(node.get("version")),
                latest_version=_version(node.get("latest_version")),
                access=str(node.get("access") or "protected"),
                group=node.get("group"),
                raw=node,
            )
            for uid, node in nodes.items()
            if node.get("resource_type") == "model" and node.get("package_name") == project
            and project not in excluded and (not included or project in included)
        )  # fmt: skip
        groups = {g["name"]: g for g in data.get("groups", {}).values() if g.get("package_name") == project}
        return ProjectManifest(
            project=project,
            path=path,
            generated_at=str(metadata.get("generated_at", "")),
            models=models,
            groups=groups,
            version=data.get("metadata", {}).get("dbt_version"),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ArtifactError(f"{display_path(path)}: not a dbt manifest (missing {exc}). {fix}") from None


@dataclass(frozen=True)
class NodeResult:
    unique_id: str
    status: str
    message: str | None
    execution_time: float


def load_run_results(path: Path) -> list[NodeResult]:
    """The per-node results of the last dbt invocation in a project."""
    data = read_json(path, "run results", "Run `dbt build` again.")
    try:
        return [
            NodeResult(r["unique_id"], str(r["status"]), r.get("message"), float(r.get("execution_time") or 0))
            for r in data["results"]
        ]
    except (KeyError, TypeError) as exc:
        raise ArtifactError(f"{display_path(path)}: not dbt run results (missing {exc}).") from None


def run_results_invocation(path: Path) -> str | None:
    """The dbt invocation that wrote a run_results.json."""
    data = read_json(path, "run results", "Run `dbt build` again.")
    return (data.get("metadata") or {}).get("invocation_id") if isinstance(data, dict) else None
