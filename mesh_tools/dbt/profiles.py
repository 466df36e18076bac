"""Profiles as dbt reads them: which profiles.yml, which target, and what it points at (files, attachments).

Rendered by dbt's own loader (env_var, targets, shared profile names), never re-parsed here; the files
are first checked by the bounded reader, so a YAML bomb is one located error and never hangs dbt's loader.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh_tools.core.errors import ConfigError, display_path
from mesh_tools.core.yamlfile import check_bounded
from mesh_tools.dbt import engines
from mesh_tools.dbt.profiles_dir import profiles_dir_for as profiles_dir_for  # its callers find it here


@dataclass(frozen=True)
class ProfileInfo:
    """What a domain's dbt target connects to, as dbt itself reads its profile."""

    profile: str
    target: str
    adapter: str
    profiles_file: Path
    schema: str | None = None
    database: str | None = None
    # files the target opens: the main database file, then attached ones (DuckDB); the warehouse folder (Spark)
    files: tuple[Path, ...] = ()
    attached: tuple[str, ...] = ()  # "alias = path (read-only)", for people
    remote: tuple[str, ...] = ()  # locations that are not local files (s3://, md:, ...)
    warehouse: Path | None = None  # a local Spark session's warehouse folder
    user: str | None = None  # the login role a warehouse target connects as (PostgreSQL, ...)
    # how to open a connection of one's own (PostgreSQL: host, port, dbname, user, password; a Spark
    # cluster: method, host, port, endpoint), what chooses among an adapter's engines; kept in memory only,
    # never written or shown
    connection: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    # the target and profiles folder as they were asked for (None: dbt's default): a later dbt invocation for
    # the same domain passes them as given, since dbt's partial parsing starts over when they differ
    requested_target: str | None = None
    requested_profiles_dir: Path | None = None

    @property
    def identity(self) -> str | None:
        """The warehouse a server target builds into (server, database, schema, role), or None."""
        c = self.connection
        if not c:
            return None
        if c.get("endpoint"):  # a Spark cluster: its server, and the domain's schema in its one metastore
            return f"{c['endpoint']}?schema={self.schema}"
        return (
            f"{self.adapter}://{c.get('user')}@{c.get('host')}:{c.get('port')}/{c.get('dbname')}?schema={self.schema}"
        )

    @property
    def stored(self) -> engines.Storage:
        """Where the target keeps its relations, as its engine read it from the credentials."""
        return engines.Storage(self.files, self.attached, self.remote, self.warehouse, self.connection)

    @property
    def storage(self) -> Path | None:
        """The file (DuckDB) or folder (local Spark) the domain writes its own relations to."""
        return self.warehouse if self.warehouse is not None else (self.files[0] if self.files else None)


_MISSING_ENV = re.compile(r"Env var required but not provided: '([^']+)'")


def load_profile(
    project_dir: Path, target: str | None = None, profiles_dir: Path | None = None, *, require_env: bool = True
) -> ProfileInfo:
    """The target of the project's profile, rendered by dbt (ConfigError with the fix when dbt cannot).

    ``require_env=False`` renders a variable the environment lacks (a password an administrator
    does not have) as a placeholder, to learn what the profile names (its role, its database).
    """
    from argparse import Namespace

    from dbt.config.runtime import load_profile as dbt_load_profile
    from dbt.flags import set_from_args
    from dbt_common.context import set_invocation_context

    folder = profiles_dir_for(project_dir, profiles_dir)
    where = display_path(folder / "profiles.yml")
    for path in (folder / "profiles.yml", project_dir / "dbt_project.yml"):  # dbt's loader would hang on a bomb
        check_bounded(path)
    set_from_args(Namespace(profiles_dir=str(folder)), None)
    env = dict(os.environ)
    while True:
        set_invocation_context(env)  # what env_var() reads, as in a dbt invocation
        try:
            profile = dbt_load_profile(str(project_dir), {}, None, target, None)
            break
        except Exception as exc:  # dbt's own configuration errors, reworded with the file and the fix
            missing = _MISSING_ENV.search(str(exc))
            if not require_env and missing and missing[1] not in env:
                env[missing[1]] = "(not set)"
                continue
            detail = " ".join(str(exc).split())
            raise ConfigError(
                f"{display_path(project_dir / 'dbt_project.yml')}: dbt cannot read its profile from {where}: "
                f"{detail} Fix profiles.yml, or point the mesh at the right one with `mesh --profiles-dir DIR` "
                "or DBT_PROFILES_DIR."
            ) from None
    credentials = profile.credentials
    adapter = str(credentials.type)
    engine = engines.find_engine(adapter, credentials)  # an adapter the mesh has no engine for: no storage known
    storage = engine.storage(project_dir, credentials) if engine is not None else engines.Storage()
    connection = storage.connection
    if connection:
        # dbt leaves a password whose env_var() is not set as the template text, and the server then
        # refuses "password authentication failed": say which variable is missing instead
        unset = [m for v in connection.values() for m in re.findall(r"env_var\(\s*['\"]([^'\"]+)", str(v))]
        if unset and require_env:
            raise ConfigError(
                f"{display_path(folder / 'profiles.yml')}: target {profile.target_name} of "
                f"{display_path(project_dir)} reads {', '.join(dict.fromkeys(unset))} from the environment, and it "
                "is not set: export it (from your secret store) and run again."
            )
    return ProfileInfo(
        profile=profile.profile_name,
        target=profile.target_name,
        adapter=adapter,
        profiles_file=folder / "profiles.yml",
        schema=getattr(credentials, "schema", None),
        database=getattr(credentials, "database", None),
        files=storage.files,
        attached=storage.attached,
        remote=storage.remote,
        warehouse=storage.warehouse,
        user=getattr(credentials, "user", None),
        connection=connection,
        requested_target=target,
        requested_profiles_dir=profiles_dir,
    )
