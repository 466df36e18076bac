"""Locks per domain that never strand the mesh, and files the mesh writes never through a symbolic link.

Kill tests kill a run at seeded random moments of its workers' start-up and assert that nothing it
forked outlives it and that the next writer runs. Writers of different domains run at once; two
writers of one domain take turns (``--wait``). A link planted where the mesh writes leaves the file
it points to untouched.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from mesh_tools.core import lock
from mesh_tools.core.errors import BusyError, StorageError
from mesh_tools.core.files import append_durably, write_atomic
from tests.helpers import REPO, mesh_env, run_mesh

SEED = int(os.environ.get("MESH_KILL_SEED", "2028"))
PRODUCT = Path("exchange/products/shop/orders/v2")


def _current(root: Path) -> str:
    return json.loads((root / PRODUCT / "current.json").read_text())["release_id"]


def _processes(marker: str) -> dict[int, str]:
    """pid -> state of every process whose command line holds ``marker`` (a forked process keeps its parent's)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                found[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
    return found


def _alive(marker: str, exclude: set[int]) -> dict[int, str]:
    """The processes of ``marker`` that still run (a zombie is dead: only its exit status is left)."""
    return {pid: state for pid, state in _processes(marker).items() if pid not in exclude and state != "Z"}


def _settle(marker: str, exclude: set[int], seconds: float = 5.0) -> dict[int, str]:
    deadline = time.monotonic() + seconds
    while (left := _alive(marker, exclude)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


# A `mesh` run in miniature, forked from a warm launcher as the test harness forks commands: take the domain's
# lock, start two workers (one gets a task, one waits for work: the worker that outlived its run), wait.
LAUNCHER = """
import os, signal, sys, time
from pathlib import Path
from mesh_tools.core.lock import domain, hold
from mesh_tools.workflows.scheduler import worker_pool

root = Path(sys.argv[1])
print("ready", flush=True)
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        with hold(root, [domain("shop")], "mesh build"):
            with worker_pool(2) as pool:
                pool.submit(time.sleep, 60).result()
        os._exit(0)
    time.sleep(float(line))
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    print("killed", flush=True)
"""


def test_a_run_killed_while_its_workers_start_leaves_no_worker_and_no_lock(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    marker = f"kill-test-{uuid.uuid4().hex}"
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(tmp_path), marker], cwd=REPO, env=mesh_env(),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert launcher.stdin is not None and launcher.stdout is not None
    try:
        assert launcher.stdout.readline().strip() == "ready"
        # most kills land within the first milliseconds (lock taken, workers forking, their set-up), a few later
        delays = [rng.uniform(0, 0.03) for _ in range(6)] + [rng.uniform(0.05, 0.4) for _ in range(2)]
        for number, delay in enumerate(delays):
            launcher.stdin.write(f"{delay}\n")
            launcher.stdin.flush()
            assert launcher.stdout.readline().strip() == "killed"
            left = _settle(marker, {launcher.pid})
            assert not left, f"seed {SEED}, try {number} (kill after {delay * 1000:.1f} ms): still running: {left}"
            notes: list[str] = []
            with lock.hold(tmp_path, [lock.domain("shop")], "the next run", wait=2, note=notes.append):
                pass  # the next writer runs
            assert notes == [], f"seed {SEED}, try {number}: the lock was kept by what the run left behind"
    finally:
        launcher.kill()
        launcher.wait()
        for pid in _alive(marker, set()):  # only what this test started
            os.kill(pid, signal.SIGKILL)


def test_mesh_build_killed_in_its_first_seconds_leaves_the_mesh_usable(plain_mesh_copy: Path) -> None:
    """The finding itself: `kill -9` of `mesh build` as its workers start; the next command ran, and found
    the mesh busy, held by a worker of the dead run (3 of 3 tries)."""
    root = plain_mesh_copy
    rng = random.Random(SEED)
    marker = f"mesh-kill-{uuid.uuid4().hex}"
    build = subprocess.Popen(
        [sys.executable, "-c", "import sys; from mesh_tools.cli import main; main(sys.argv[2:])", marker,
         "build", "--no-state", "shop", "reporting"],
        cwd=root, env=mesh_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while len(_processes(marker)) < 2 and time.monotonic() < deadline:  # its first worker is forked
            time.sleep(0.01)
        assert build.poll() is None, "the build ended before its workers started"
        time.sleep(rng.uniform(0, 0.5))
        build.kill()
        build.wait()
        left = _settle(marker, set())
        assert not left, f"seed {SEED}: still running after the build was killed: {left}"
    finally:
        for pid in _alive(marker, set()):
            os.kill(pid, signal.SIGKILL)
    published = run_mesh("publish", "shop", cwd=root)
    assert published.returncode == 0, published.stdout + published.stderr
    assert "busy" not in published.stderr


HOLDER = """
import subprocess, sys, os
from pathlib import Path
from mesh_tools.core import lock
root = Path(sys.argv[1])
with lock.hold(root, [lock.domain("shop")], "mesh build shop"):
    fd = next(iter(lock._held.values()))[0]
    # what a worker forked without the mesh's care does: keep the lock's descriptor, and outlive its run
    # no stream of the test's own (under pytest-xdist, stdin is the worker's channel): nothing but the lock ties it
    child = subprocess.Popen(["sleep", "60"], pass_fds=[fd], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    print(child.pid, flush=True)
    os._exit(0)  # the run dies (as by kill -9): no release, no clean-up
"""


def test_a_lock_kept_by_what_a_dead_run_left_behind_is_taken_over_with_a_note(tmp_path: Path) -> None:
    holder = subprocess.run([sys.executable, "-c", HOLDER, str(tmp_path)], capture_output=True, text=True,
                            env=mesh_env(), cwd=REPO, timeout=60)  # fmt: skip
    orphan = int(holder.stdout.strip())
    notes: list[str] = []
    try:
        # Popen returns once exec has begun; the kernel sets the new command line a moment later (an empty
        # /proc/<pid>/cmdline was seen in CI), so wait for it rather than read it once
        deadline = time.monotonic() + 10
        while not _alive("sleep 60", set()).get(orphan) and time.monotonic() < deadline:
            time.sleep(0.02)
        status = Path(f"/proc/{orphan}/status")
        seen = status.read_text()[:200] if status.exists() else "no such process"
        assert _alive("sleep 60", set()).get(orphan), f"the left-behind process should still hold the lock: {seen}"
        with lock.hold(tmp_path, [lock.domain("shop")], "mesh publish shop", note=notes.append):
            pass
    finally:
        os.kill(orphan, signal.SIGKILL)
    assert len(notes) == 1, notes
    assert "domain shop was locked by `mesh build shop` (pid " in notes[0]
    assert f"which is gone; the lock was still held by what it left behind (pid {orphan}: sleep 60)" in notes[0]


def test_a_holder_is_gone_when_its_pid_is_dead_or_names_a_later_process() -> None:
    me = os.getpid()
    assert not lock._gone({"pid": me, "pid_start": lock._start_time(me)})
    assert lock._gone({"pid": me, "pid_start": (lock._start_time(me) or 0) + 1})  # the pid was reused
    child = subprocess.Popen(["true"])
    child.wait()
    assert lock._gone({"pid": child.pid})
    assert not lock._gone({"pid": child.pid, "host": "another-machine"})  # its pids say nothing here


def test_a_forked_child_does_not_keep_its_parents_lock(tmp_path: Path) -> None:
    """A child forked while the parent holds a lock (a worker) closes its copy: the lock dies with the parent."""
    script = """
import os, sys, time
from pathlib import Path
from mesh_tools.core import lock
with lock.hold(Path(sys.argv[1]), [lock.domain("shop")], "mesh build"):
    if os.fork() == 0:
        time.sleep(30)
        os._exit(0)
    os._exit(0)
"""
    marker = f"fork-test-{uuid.uuid4().hex}"
    subprocess.run([sys.executable, "-c", script, str(tmp_path), marker], env=mesh_env(), cwd=REPO, timeout=60)
    notes: list[str] = []
    try:
        assert _alive(marker, set()), "the forked child should outlive its parent"
        with lock.hold(tmp_path, [lock.domain("shop")], "next", note=notes.append):
            pass
    finally:
        for pid in _alive(marker, set()):
            os.kill(pid, signal.SIGKILL)
    assert notes == []  # free, not taken over: the child never held it


HOLD_UNTIL_TOLD = """
import sys
from pathlib import Path
from mesh_tools.core.lock import domain, hold
with hold(Path(sys.argv[1]), [domain(sys.argv[2])], "mesh build " + sys.argv[2]):
    print("held", flush=True)
    sys.stdin.readline()
"""


def _holding(root: Path, name: str) -> subprocess.Popen[str]:
    """Another writer of domain ``name`` (a real process holding its lock) until told to stop."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_UNTIL_TOLD, str(root), name], cwd=REPO, env=mesh_env(),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def _release(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    holder.stdin.write("done\n")
    holder.stdin.flush()
    holder.wait(timeout=30)


def test_writers_of_other_domains_run_at_once_and_writers_of_one_domain_take_turns(plain_mesh_copy: Path) -> None:
    root = plain_mesh_copy
    before = _current(root)
    holder = _holding(root, "shop")  # a writer of the producer, shop
    try:
        built = run_mesh("build", "reporting", cwd=root)  # its consumer does not wait for it
        assert built.returncode == 0, built.stdout + built.stderr
        # a second writer of shop is told who holds it, at once (exit 2), or waits for it with --wait
        busy = run_mesh("publish", "shop", cwd=root)
        assert busy.returncode == 2, busy.stdout + busy.stderr
        assert f"domain shop is busy: `mesh build shop` (pid {holder.pid}, since " in busy.stderr
        assert "give --wait SECONDS to wait for it" in busy.stderr and "Traceback" not in busy.stderr
        waited: dict[str, subprocess.CompletedProcess[str]] = {}
        waiter = threading.Thread(
            target=lambda: waited.update(r=run_mesh("publish", "shop", "--wait", "120", cwd=root))
        )
        waiter.start()
        time.sleep(1.5)
        assert waiter.is_alive()  # waiting for the holder
    finally:
        _release(holder)
    waiter.join(timeout=120)
    assert waited["r"].returncode == 0, waited["r"].stdout + waited["r"].stderr
    assert "shop: published shop.orders.v2" in waited["r"].stdout
    assert _current(root) != before

    # the consumer's build (it reads the release just published: dbt runs) and the producer's publish, at once
    results: dict[str, subprocess.CompletedProcess[str]] = {}
    runs = [
        threading.Thread(target=lambda: results.update(build=run_mesh("build", "reporting", cwd=root))),
        threading.Thread(target=lambda: results.update(publish=run_mesh("publish", "shop", cwd=root))),
    ]
    for thread in runs:
        thread.start()
    for thread in runs:
        thread.join()
    for name, result in results.items():
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"
        assert "busy" not in result.stderr, name
    assert "reporting        success" in results["build"].stdout


HOLD_STORAGE = """
import sys
from pathlib import Path
from mesh_tools.core.lock import hold, storage
with hold(Path(sys.argv[1]), [storage(Path(sys.argv[2]))], "mesh build shop"):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_domains_sharing_a_database_file_take_turns_on_it(plain_mesh_copy: Path) -> None:
    """DuckDB allows one writer per file: a domain whose profile opens the file another run writes waits for it."""
    root = plain_mesh_copy
    (root / "hr/profiles.yml").write_text(
        (root / "hr/profiles.yml").read_text().replace("path: hr.duckdb", "path: ../shop/shop.duckdb")
    )
    holder = subprocess.Popen([sys.executable, "-c", HOLD_STORAGE, str(root), str(root / "shop/shop.duckdb")],
                              cwd=REPO, env=mesh_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    try:
        busy = run_mesh("build", "hr", cwd=root)
        assert busy.returncode == 2, busy.stdout + busy.stderr
        assert "the database file shop/shop.duckdb is busy: `mesh build shop` (pid " in busy.stderr
    finally:
        _release(holder)


# -- nothing is written through a symbolic link


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside" / "precious.txt"
    path.parent.mkdir()
    path.write_text("precious\n")
    return path


def test_a_linked_lock_or_exchange_log_leaves_the_outside_file_untouched(plain_mesh_copy: Path, outside: Path) -> None:
    root = plain_mesh_copy
    before = _current(root)
    locks = root / ".mesh" / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    (locks / "domain-shop.lock").symlink_to(outside)
    refused = run_mesh("publish", "shop", cwd=root)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "error: .mesh/locks/domain-shop.lock: is a symbolic link (to " in refused.stderr
    assert "the mesh never writes through one" in refused.stderr
    assert outside.read_text() == "precious\n"
    (locks / "domain-shop.lock").unlink()

    log = root / "exchange" / "log.jsonl"
    log.unlink()
    log.symlink_to(outside)
    refused = run_mesh("publish", "shop", cwd=root)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "error: exchange/log.jsonl: is a symbolic link" in refused.stderr
    assert outside.read_text() == "precious\n"
    assert _current(root) == before  # the release it could not log was never made current


def test_state_receipts_reports_and_history_are_never_written_through_a_link(tmp_path: Path, outside: Path) -> None:
    """write_atomic (state, receipts, leases, reports), appends (logs, pending runs), the folder exchange's
    writes and the health history: a link at the file, or at the scratch name beside it, changes nothing outside."""
    from mesh_tools.health.history import open_history
    from mesh_tools.store.backends import FolderBackend

    folder = tmp_path / "mesh"
    folder.mkdir()
    state = folder / "state.json"
    state.symlink_to(outside)
    with pytest.raises(StorageError, match=r"state.json: is a symbolic link .* the file it points to was left"):
        write_atomic(state, "{}")
    # a link planted at the scratch name write_atomic uses: removed, never written through
    state.unlink()
    (folder / f".state.json.{os.getpid()}.partial").symlink_to(outside)
    write_atomic(state, "{}")
    assert state.read_text() == "{}" and not state.is_symlink()
    with pytest.raises(StorageError):
        append_durably(_linked(folder / "pending-runs.jsonl", outside), b"x\n")

    exchange = FolderBackend(folder / "exchange")
    _linked(folder / "exchange" / "receipts" / "reporting.json", outside)
    with pytest.raises(StorageError):
        exchange.write("receipts/reporting.json", b"{}")
    (folder / "exchange" / "log" / f".event.json.{os.getpid()}.partial").parent.mkdir(parents=True)
    (folder / "exchange" / "log" / f".event.json.{os.getpid()}.partial").symlink_to(outside)
    exchange.create("log/event.json", b"{}")  # the planted scratch link is not written through
    assert (folder / "exchange" / "log" / "event.json").read_bytes() == b"{}"
    _linked(folder / "exchange" / "log" / "linked.json", outside)
    with pytest.raises(StorageError, match="already exists"):
        exchange.create("log/linked.json", b"{}")
    with pytest.raises(StorageError):
        exchange.fetch("log/event.json", _linked(folder / "cache.json", outside))

    history = _linked(folder / "health" / "history.duckdb", outside)
    with pytest.raises(StorageError, match="history.duckdb: is a symbolic link"):
        with open_history(history):
            pass
    assert outside.read_text() == "precious\n"


def _linked(path: Path, target: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    return path


def test_busy_and_wait_on_the_lock_api(tmp_path: Path) -> None:
    """A held lock: another taker waits up to ``wait`` seconds, then is told who holds it; every lock taken
    by a refused taker is released (it holds all it asked for, or none)."""
    holder = _holding(tmp_path, "sales")
    try:
        start = time.monotonic()
        with pytest.raises(BusyError, match=r"domain sales is busy: `mesh build sales` \(pid \d+, since "):
            with lock.hold(tmp_path, [lock.domain("marketing"), lock.domain("sales")], "mesh build", wait=0.5):
                pass
        assert 0.5 <= time.monotonic() - start < 5
        with lock.hold(tmp_path, [lock.domain("marketing")], "mesh publish marketing"):
            pass  # marketing was released by the refused taker
        threading.Timer(0.5, _release, [holder]).start()
        with lock.hold(tmp_path, [lock.domain("sales")], "mesh publish sales", wait=30):
            pass
    finally:
        holder.kill()
        holder.wait()
    assert list((tmp_path / ".mesh" / "locks").iterdir()) == []  # a released lock leaves no file


def test_storage_locks_render_a_profile_again_only_when_an_input_of_the_render_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The storage files a build locks are kept by a digest of what dbt's profile render reads (a mesh where
    nothing changed then never imports dbt): a kept entry is used as long as that digest holds, and a changed
    profiles.yml or a variable it reads renders it again."""
    from mesh_tools.core.mesh import load_mesh
    from mesh_tools.workflows.locks import STORAGE_CACHE, save_storage_cache, storage_files
    from tests.helpers import copy_fixture

    root = copy_fixture("state_mesh", tmp_path)
    profiles = root / "shop" / "profiles.yml"
    profiles.write_text(
        profiles.read_text().replace("path: shop.duckdb", "path: \"{{ env_var('SHOP_DB', 'shop') }}.duckdb\"")
    )
    mesh = load_mesh(root)
    first = storage_files(mesh, ["shop"], None)
    assert [p.name for p in first] == ["shop.duckdb"]
    cache = root / ".mesh" / STORAGE_CACHE
    assert not cache.exists()  # kept only once the command ran (a refused command writes nothing)
    save_storage_cache(mesh)
    kept = json.loads(cache.read_text())
    kept["shop"]["files"] = ["/kept/by/the/cache.duckdb"]  # proves the next call reads the entry, not dbt
    cache.write_text(json.dumps(kept))
    assert storage_files(mesh, ["shop"], None) == [Path("/kept/by/the/cache.duckdb")]
    monkeypatch.setenv("SHOP_DB", "other")  # a variable the profile reads: rendered again
    assert [p.name for p in storage_files(mesh, ["shop"], None)] == ["other.duckdb"]
    profiles.write_text(profiles.read_text().replace("threads: 2", "threads: 1"))  # the file: rendered again
    cache.write_text("{not json")  # and a damaged cache is rendered again and rewritten
    assert [p.name for p in storage_files(mesh, ["shop"], None)] == ["other.duckdb"]
    save_storage_cache(mesh)
    assert json.loads(cache.read_text())["shop"]["files"][0].endswith("other.duckdb")
