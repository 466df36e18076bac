"""Stitch one domain: check its cross-project refs, then install a stub per declared upstream."""

from __future__ import annotations

from dataclasses import dataclass

from mesh_tools.artifacts import ProjectManifest, load_manifest
from mesh_tools.mesh import Domain, Mesh
from mesh_tools.profiles import storage_of
from mesh_tools.stitch.install import install_stub, remove_stale_stubs
from mesh_tools.stitch.refs import check_ref, scan_refs
from mesh_tools.stitch.stub import stub_files


@dataclass(frozen=True)
class StitchOutcome:
    """What stitching one domain did, or why it refused."""

    domain: str
    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


def upstream_manifests(mesh: Mesh, domain: Domain) -> dict[str, ProjectManifest]:
    """The manifest of every upstream the domain declares (ArtifactError when one is unusable)."""
    manifests = {}
    for up in domain.upstreams:
        if up.name in mesh.domains:
            path = mesh.domains[up.name].manifest_path
            fix = f"Build (or rebuild) the upstream: `mesh build {up.name}`, or `mesh stitch` to parse it only."
        else:
            assert up.manifest_path is not None
            path, fix = up.manifest_path, f"Fix the manifest path declared at {up.declared_in}."
        manifests[up.name] = load_manifest(path, up.name, fix)
    return manifests


def installed_packages(domain: Domain) -> set[str]:
    folder = domain.packages_dir
    names = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    return names | {p.name for p in domain.local_packages}


def check_domain_refs(mesh: Mesh, domain: Domain, manifests: dict[str, ProjectManifest]) -> list[str]:
    """One message per cross-project ref of the domain that cannot resolve."""
    packages = installed_packages(domain)
    problems = []
    for ref in scan_refs(domain):
        problem = check_ref(ref, domain, mesh, manifests, packages)
        if problem and problem not in problems:
            problems.append(problem)
    return problems


def stitch_domain(mesh: Mesh, domain: Domain, target: str | None = None) -> StitchOutcome:
    """Check refs, then write or refresh the domain's stub packages (nothing is written on a problem)."""
    manifests = upstream_manifests(mesh, domain)
    problems = check_domain_refs(mesh, domain, manifests)
    if problems:
        return StitchOutcome(domain.name, problems=tuple(problems))
    changed, unchanged = [], []
    for up in domain.upstreams:
        storage = storage_of(mesh.domains[up.name], target) if up.name in mesh.domains else None
        if install_stub(domain, up.name, stub_files(manifests[up.name], storage)):
            changed.append(up.name)
        else:
            unchanged.append(up.name)
    return StitchOutcome(
        domain.name, changed=tuple(changed), unchanged=tuple(unchanged), removed=tuple(remove_stale_stubs(domain))
    )
