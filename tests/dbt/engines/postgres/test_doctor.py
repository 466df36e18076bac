"""`mesh doctor` on the warehouse: what the postgres engine says stops a build there, and nothing else."""

from __future__ import annotations

from tests.helpers import Built, run_mesh


def test_doctor_passes_the_demo_that_builds_on_postgres_and_names_a_schema_it_would_cut(pg_mesh: Built) -> None:
    """The demo builds on PostgreSQL: doctor finds nothing blocking there (it said every domain builds on an
    engine the mesh does not support, and exited 1). A target schema PostgreSQL would cut is blocking, with
    the profile and the fix, as the build itself refuses it."""
    assert pg_mesh.result.returncode == 0, pg_mesh.output
    root = pg_mesh.root
    doctor = run_mesh("doctor", "--target", "postgres", cwd=root)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "builds on 'postgres'" not in doctor.stdout and "blocking" not in doctor.stdout.lower(), doctor.stdout
    profiles = root / "projects/finance/profiles.yml"
    original = profiles.read_text()
    long = "f" * 60
    profiles.write_text(original.replace("      schema: finance\n", f"      schema: {long}\n"))
    try:
        cut = run_mesh("doctor", "--target", "postgres", cwd=root)
        build = run_mesh("build", "finance", "--target", "postgres", "--no-publish", cwd=root)
    finally:
        profiles.write_text(original)
    assert cut.returncode == 1, cut.stdout + cut.stderr
    said = f"finance would make the schema {long}_releases, longer than PostgreSQL's 63 bytes"
    assert said in cut.stdout and "projects/finance/profiles.yml" in cut.stdout, cut.stdout
    assert "Give the target a shorter `schema` in its profiles.yml." in cut.stdout, cut.stdout
    assert (
        build.returncode != 0 and f"{long}_releases, longer than PostgreSQL's 63 bytes" in build.stdout + build.stderr
    )
