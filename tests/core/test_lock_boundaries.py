"""The kernel's lock is the truth, a lock that cannot be taken stops the command, and what dbt and the mesh read is
bounded: every YAML file dbt reads is checked first, and JSON nested too deep is a corrupt file, never a crash.

A lock is taken over only from a proven leftover of a dead holder in this very PID namespace: a holder in
another namespace (its own pid 1) is busy, named, from either side (real ``unshare -p`` namespaces, skipped
where the kernel refuses them), and so is a lock whose kernel-recorded taker lives while its file names a dead
process. A writing command whose lock folder cannot be written stops, exit 3, before it writes anything.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesh_tools.core import lock
from mesh_tools.core.errors import ArtifactError, BusyError, ConfigError, StorageError
from mesh_tools.core.jsonfile import loads
from tests.helpers import REPO, mesh_env, run_command, run_mesh, written_files

# -- locks: a holder in another PID namespace, and a taker the record does not name

HOLD = """
import sys
from pathlib import Path
from mesh_tools.core.lock import domain, hold
with hold(Path(sys.argv[1]), [domain("reporting")], "mesh build reporting"):
    print("held", flush=True)
    sys.stdin.readline()
"""

TAKE = """
import sys
from pathlib import Path
from mesh_tools.core.errors import BusyError
from mesh_tools.core.lock import domain, hold
notes = []
try:
    with hold(Path(sys.argv[1]), [domain("reporting")], "mesh build reporting", note=notes.append):
        print("taken", notes)
except BusyError as exc:
    print("busy", exc)
"""

NAMESPACE = ["unshare", "--pid", "--fork", "--mount-proc"]


def _namespaces() -> None:
    """Skip, saying why, where this process may not make a PID namespace (not root, or a kernel that refuses)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    tried = subprocess.run([*NAMESPACE, "true"], capture_output=True, text=True, timeout=30)
    if tried.returncode != 0:
        pytest.skip(f"this machine refuses a new PID namespace: {tried.stderr.strip()[:200]}")


def _start(argv: list[str]) -> subprocess.Popen[str]:
    holder = subprocess.Popen(argv, cwd=REPO, env=mesh_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def _stop(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    holder.stdin.write("done\n")
    holder.stdin.flush()
    holder.wait(timeout=30)


def _child_of(pid: int) -> int:
    """The one child of ``pid`` (unshare --fork runs the command as its child, pid 1 inside, another pid here)."""
    children = (Path(f"/proc/{pid}/task/{pid}/children").read_text()).split()
    assert len(children) == 1, children
    return int(children[0])


def test_a_holder_in_another_pid_namespace_is_busy_never_taken_over(tmp_path: Path) -> None:
    """The finding: `mesh build reporting` in `unshare -p -f --mount-proc` records pid 1; a run on the host found
    its own pid 1 to be another process, took the lock over from the live holder, and both builds ran."""
    _namespaces()
    holder = _start([*NAMESPACE, sys.executable, "-c", HOLD, str(tmp_path)])
    notes: list[str] = []
    try:
        record = json.loads((tmp_path / ".mesh/locks/domain-reporting.lock").read_text())
        assert record["pid"] == 1  # its pid in its own namespace: here pid 1 is another process
        inside = _child_of(holder.pid)
        with pytest.raises(BusyError) as busy:
            with lock.hold(tmp_path, [lock.domain("reporting")], "mesh build reporting --full", note=notes.append):
                pytest.fail("took the lock of a live holder")
        message = str(busy.value)
        assert "domain reporting is busy: `mesh build reporting` (pid 1, since " in message
        assert f"the lock is held by pid {inside}: {sys.executable} -c " in message
        assert "in another PID namespace: not provably a process that run left behind" in message
        assert notes == []

        # and from inside a namespace, a holder on the host (whose pid does not exist there) is busy too
        _stop(holder)
        holder = _start([sys.executable, "-c", HOLD, str(tmp_path)])
        taker = subprocess.run([*NAMESPACE, sys.executable, "-c", TAKE, str(tmp_path)], cwd=REPO, env=mesh_env(),
                               capture_output=True, text=True, timeout=60)  # fmt: skip
        assert taker.stdout.startswith("busy "), taker.stdout + taker.stderr
        assert f"`mesh build reporting` (pid {holder.pid}, since " in taker.stdout
        assert "a process this one cannot see" in taker.stdout
    finally:
        _stop(holder)


# A process that takes the lock itself and leaves a record naming another, dead, process of this namespace: what
# a reader sees between a new holder's lock and its record, or a forged file. The kernel names the live taker.
STALE_RECORD = """
import fcntl, json, os, socket, subprocess, sys
from pathlib import Path
from mesh_tools.core import lock
path = Path(sys.argv[1]) / ".mesh/locks/domain-reporting.lock"
path.parent.mkdir(parents=True)
dead = subprocess.Popen(["true"])
dead.wait()
fd = os.open(path, os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, json.dumps({"pid": dead.pid, "pid_start": 1, "pid_ns": os.readlink("/proc/self/ns/pid"),
                         "sid": os.getsid(0), "host": socket.gethostname(), "command": "mesh build reporting",
                         "started": "2026-01-01 00:00:00"}).encode())
print("held", flush=True)
sys.stdin.readline()
"""


def test_a_lock_whose_kernel_taker_lives_is_busy_whatever_its_file_says(tmp_path: Path) -> None:
    holder = _start([sys.executable, "-c", STALE_RECORD, str(tmp_path)])
    notes: list[str] = []
    try:
        with pytest.raises(BusyError, match=rf"the lock is held by pid {holder.pid}: {sys.executable} -c "):
            with lock.hold(tmp_path, [lock.domain("reporting")], "mesh publish reporting", note=notes.append):
                pytest.fail("took the lock of a live holder")
        assert notes == []
    finally:
        _stop(holder)


# -- a lock that cannot be taken: the command stops before it writes


def test_a_lock_folder_that_cannot_be_made_stops_the_command_and_reading_needs_none(tmp_path: Path) -> None:
    (tmp_path / ".mesh").write_text("")  # a file where the lock folder goes
    with pytest.raises(StorageError) as refused:
        with lock.hold(tmp_path, [lock.domain("hr")], "mesh build hr"):
            pytest.fail("ran without its lock")
    assert str(refused.value).startswith(
        f"{tmp_path}/.mesh/locks: the lock folder cannot be written ({tmp_path}/.mesh: Not a directory)"
    )
    assert "so `mesh build hr` cannot take its lock and did nothing" in str(refused.value)
    (tmp_path / ".mesh").unlink()
    with lock.hold(tmp_path, [], "mesh status"):
        pass  # nothing to lock: nothing is written, not even the folder
    assert list(tmp_path.iterdir()) == []


def test_a_fifo_at_a_lock_path_is_named(tmp_path: Path) -> None:
    folder = tmp_path / ".mesh/locks"
    folder.mkdir(parents=True)
    os.mkfifo(folder / "domain-hr.lock")
    with pytest.raises(StorageError, match=r"domain-hr.lock: is not a plain file \(a FIFO, socket or device"):
        with lock.hold(tmp_path, [lock.domain("hr")], "mesh build hr"):
            pytest.fail("ran without its lock")


@pytest.fixture
def immutable_locks(plain_mesh_copy: Path) -> Iterator[Path]:
    """The mesh's lock folder made immutable (``chattr +i``: refused even to root), made mutable again after."""
    locks = plain_mesh_copy / ".mesh" / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        pytest.skip("chattr +i needs root and e2fsprogs")
    if subprocess.run(["chattr", "+i", str(locks)], capture_output=True).returncode != 0:
        pytest.skip("this file system has no immutable flag")
    try:
        yield plain_mesh_copy
    finally:
        subprocess.run(["chattr", "-i", str(locks)], check=True)


def test_a_writing_command_without_its_lock_is_exit_3_and_writes_nothing(immutable_locks: Path) -> None:
    """The finding: with .mesh/locks immutable, two `mesh build hr --full` ran at once, unlocked and silent."""
    root = immutable_locks
    before = {name: written_files(root / name) for name in ("hr", "exchange")}
    built = run_mesh("build", "hr", "--no-state", cwd=root)
    assert built.returncode == 3, built.stdout + built.stderr
    assert built.stderr.startswith(
        "error: .mesh/locks: the lock folder cannot be written (.mesh/locks/domain-hr.lock: Operation not permitted), "
        "so `mesh build hr` cannot take its lock and did nothing"
    ), built.stderr
    assert "`chattr -i` if it is immutable" in built.stderr and "Traceback" not in built.stderr
    assert {name: written_files(root / name) for name in before} == before
    status = run_mesh("status", cwd=root)  # a reading command takes no lock
    assert status.returncode in (0, 1) and "lock" not in status.stderr, status.stdout + status.stderr


# -- every YAML file dbt reads is checked first (dbt-core 1.11's own search)

BOMB = "a0: &a0 [" + ",".join(['"lol"'] * 9) + "]\n" + "".join(
    f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 9)
) + "models:\n  - name: bomb\n    meta: {b: *a8}\n"  # fmt: skip


def _project(folder: Path) -> Path:
    (folder / "models").mkdir(parents=True)
    (folder / "dbt_project.yml").write_text("name: hr\nversion: '1'\nprofile: hr\n")
    (folder / "models" / "ok.yml").write_text("models: []\n")
    return folder


def test_yaml_dbt_reads_in_hidden_or_target_folders_is_checked_as_dbt_finds_it(tmp_path: Path) -> None:
    from mesh_tools.dbt.yamlinputs import check_dbt_yaml

    project = _project(tmp_path / "hr")
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    for place in ("models/.hidden/bomb.yml", "models/target/Bomb.YAML", "functions/x/b.yml", "macros/b.Yml"):
        bomb = project / place
        bomb.parent.mkdir(parents=True, exist_ok=True)
        bomb.write_text(BOMB)
        with pytest.raises(ConfigError, match=rf"^{project}/{place}:6: aliases \(\*name\) expand to more than 200,"):
            check_dbt_yaml(project, profiles)
        bomb.unlink()
    # what dbt never reads is not refused: names it skips, and what .dbtignore leaves out
    for place in ("models/.bomb.yml", "models/#bomb.yml", "models/~bomb.yml", "models/skipped/bomb.yml"):
        (project / place).parent.mkdir(parents=True, exist_ok=True)
        (project / place).write_text(BOMB)
    (project / ".dbtignore").write_text("models/skipped/\n")
    check_dbt_yaml(project, profiles)


def test_an_alias_bomb_in_a_hidden_model_folder_is_one_error_not_a_hang(plain_mesh_copy: Path) -> None:
    """The finding: `hr/models/.hidden/bomb.yml` hung `mesh build hr` (killed at 90 s)."""
    root = plain_mesh_copy
    (root / "hr/models/.hidden").mkdir()
    (root / "hr/models/.hidden/bomb.yml").write_text(BOMB)
    start = time.monotonic()
    built = run_command(["mesh", "build", "hr"], root, timeout=60)
    assert time.monotonic() - start < 30
    assert built.returncode == 1, built.stdout + built.stderr
    assert "error: hr/models/.hidden/bomb.yml:6: aliases (*name) expand to more than 200,000 values" in built.stdout


def test_a_change_in_a_folder_dbt_reads_makes_the_manifest_stale(plain_mesh_copy: Path) -> None:
    """dbt reads YAML in hidden and `target` folders below models/ (a description there reaches manifest.json): a
    change there is a change, never "nothing changed"; a function (dbt 1.11) too."""
    from mesh_tools.core.mesh import load_mesh
    from mesh_tools.dbt import staleness

    root = plain_mesh_copy
    for place in ("hr/models/.hidden/more.yml", "hr/models/target/more.yml", "hr/functions/double.sql"):
        assert staleness.judge(load_mesh(root).domains["hr"]).fresh, place
        (root / place).parent.mkdir(parents=True, exist_ok=True)
        (root / place).write_text("models: []\n" if place.endswith(".yml") else "select 1\n")
        judged = staleness.judge(load_mesh(root).domains["hr"])
        assert not judged.fresh and judged.changed == root / place, place
        (root / place).unlink()


# -- JSON nested too deep: a corrupt file to every reader, never a crash

DEEP = "[" * 100_000 + "]" * 100_000


def test_json_nested_too_deep_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="nested deeper than any file the mesh or dbt writes"):
        loads(DEEP)
    with pytest.raises(ValueError):
        loads('{"a":' * 100_000 + "1" + "}" * 100_000)
    assert loads("[[1]]") == [[1]]


def test_every_reader_of_a_deep_json_file_says_corrupt_or_falls_back(plain_mesh_copy: Path) -> None:
    """The findings: exit 4 from `mesh status` (a receipt), a consumer's build (a pointer), `mesh check` (a parse
    record); "worker crashed" for a producer's build from one consumer's lease in the shared exchange, and for a
    stitch from its stub relations."""
    from mesh_tools.core.mesh import load_mesh
    from mesh_tools.dbt import staleness
    from mesh_tools.dbt.packages import MARKER, read_marker
    from mesh_tools.exchange.retention import apply_retention
    from mesh_tools.health.pending import PENDING, pending_runs
    from mesh_tools.stitch.revoke import Ledger, ledger_path, load_ledger
    from mesh_tools.store.exchange import open_exchange

    root = plain_mesh_copy
    mesh = load_mesh(root)
    exchange = open_exchange(mesh)
    planted: dict[Path, bytes] = {}

    def plant(path: Path, text: str = DEEP) -> None:
        planted.setdefault(path, path.read_bytes() if path.is_file() else b"")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    plant(root / "exchange/receipts/reporting.json")
    status = run_mesh("status", cwd=root)
    assert status.returncode == 3, status.stdout + status.stderr
    assert "error: exchange/receipts/reporting.json: receipt is corrupt (it is nested deeper than any file the mesh " \
        "or dbt writes). Rebuild reporting." in status.stderr  # fmt: skip

    restore(planted)
    plant(root / "exchange/leases/reporting.json")  # the producer's retention: skipped with a warning
    problems: list[str] = []
    assert apply_retention(mesh, exchange, [], problems=problems) == []
    assert problems == [
        f"retention skipped, nothing deleted: {root}/exchange/leases/reporting.json: lease is corrupt (it is nested "
        "deeper than any file the mesh or dbt writes). Stitch reporting again."
    ]
    plant(root / "exchange/products/shop/orders/v2/current.json")
    with pytest.raises(ArtifactError, match=r"current.json: current-release pointer is corrupt \(it is nested deeper"):
        exchange.current_id("shop", "orders", "2")

    reporting = mesh.domains["reporting"]
    plant(reporting.target_dir / "mesh_parse_inputs.json")
    assert not staleness.judge(reporting).fresh  # cannot be told current: readers parse again
    plant(root / "reporting/dbt_packages/shop" / MARKER)
    assert read_marker(root / "reporting/dbt_packages/shop") is None
    plant(ledger_path(reporting))  # mesh_stub_relations.json: read as empty (the installed stubs seed it again)
    assert load_ledger(reporting) == Ledger()
    plant(mesh.health_path / PENDING, DEEP + "\n")
    assert pending_runs(mesh) == []
    restore(planted)


def restore(planted: dict[Path, bytes]) -> None:
    for path, raw in planted.items():
        path.write_bytes(raw)
    planted.clear()


def test_a_deep_lock_record_is_read_as_none_never_a_crash(tmp_path: Path) -> None:
    record = tmp_path / "domain-hr.lock"
    record.write_text(DEEP[:4096])  # what a reader reads of a lock's record
    fd = os.open(record, os.O_RDONLY)
    try:
        assert lock._read_holder(fd) is None
    finally:
        os.close(fd)
