"""A throwaway PostgreSQL server on loopback, from the machine's packages (tests and benchmarks).

One cluster in a temp folder, on a free port, password authentication (scram) for every TCP
connection, stopped and deleted by ``stop()``. Needs the PostgreSQL server binaries
(``/usr/lib/postgresql/<v>/bin`` on Debian); when run as root, the server runs as ``postgres``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SUPERUSER_PASSWORD = "mesh-admin-secret"


def _bin_dir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(versions[-1]).parent if versions else None


def available() -> str | None:
    """Why a server cannot be started here, or None."""
    if _bin_dir() is None:
        return "no PostgreSQL server binaries (apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 is not installed (pip install -e '.[postgres]')"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    root: Path
    port: int
    host: str = "127.0.0.1"

    def _run(self, *args: str) -> None:
        bin_dir = _bin_dir()
        command = [str(bin_dir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()[-800:]}")

    def connect(self, user: str = "postgres", password: str = SUPERUSER_PASSWORD, dbname: str = "postgres"):
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=user, password=password, dbname=dbname)

    def admin(self, sql: str, dbname: str = "postgres") -> None:
        """Run statements as the superuser, autocommit (CREATE DATABASE cannot run in a transaction)."""
        con = self.connect(dbname=dbname)
        con.autocommit = True
        try:
            with con.cursor() as cur:
                cur.execute(sql)
        finally:
            con.close()

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.root, ignore_errors=True)


def start() -> Server:
    """Create and start a cluster in a folder of its own under the system's temp folder; the caller stops it.

    Not under pytest's temp folder: that one is private to root, and the server runs as ``postgres``.
    """
    root = Path(tempfile.mkdtemp(prefix="mesh-pg-"))
    (root / "sock").mkdir()
    pwfile = root / "pw"
    pwfile.write_text(SUPERUSER_PASSWORD + "\n")
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        for path in (root, root / "sock", pwfile):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    server = Server(root=root, port=_free_port())
    try:
        server._run(
            "initdb", "-D", str(root / "data"), "-U", "postgres", f"--pwfile={pwfile}", "--auth-host=scram-sha-256",
            "--auth-local=trust", "--no-sync", "-E", "UTF8", "--locale=C",
        )  # fmt: skip
        options = (
            f"-p {server.port} -k {root / 'sock'} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        server._run("pg_ctl", "-D", str(root / "data"), "-l", str(root / "log"), "-w", "-o", options, "start")
    except BaseException:
        server.stop()
        raise
    return server
