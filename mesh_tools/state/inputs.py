"""Fingerprints of what a domain's build reads that dbt's state comparison does not see, for the next build.

A state-aware build may skip a node only when it can prove that nothing it depends on changed
(right or full). Beyond refs, sources and code, a build depends on:
- the environment variables its code reads (``env_var('X')``: a model's SQL, a macro, a source's
  location, a config) and the target its profile resolves to;
- the files and relations its compiled SQL reads that are neither refs nor sources
  (dbt/engines/sqlreads.py);
- what its ``on-run-start`` hooks write;
- its seeds' files (dbt compares only the path of one over 1 MB), its dbt_project.yml files, its storage;
- the relations dbt wrote outside the mesh's runs (a hand-run ``dbt run``, even with
  ``--no-write-json`` or followed by a ``dbt compile`` that replaced run_results.json): dbt writes
  the SQL it executes for every model, seed and snapshot to ``target/run/``, so those files'
  sizes and times are the domain's run footprint.
Values are never recorded, only digests: an environment variable may hold a secret.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mesh_tools.core.files import file_sha256
from mesh_tools.core.mesh import Domain
from mesh_tools.dbt.engines import sql_dialect
from mesh_tools.dbt.engines.sqlreads import known_tails, relation_key, resolve_files, sql_reads
from mesh_tools.dbt.packages import MARKER
from mesh_tools.model.manifest import Manifest
from mesh_tools.model.nodes import Node, name_of

BUILT = ("model", "seed", "snapshot")
# env_var('NAME' ...) with a literal name; any other env_var( is a name computed at run time
_ENV_LITERAL = re.compile(r"""env_var\s*\(\s*(?:'([^'\\]+)'|"([^"\\]+)")\s*[,)]""")
_ENV_CALL = re.compile(r"env_var\s*\(")
# dbt's own environment: which target, profile and paths a command without flags uses
DBT_ENV = ("DBT_TARGET", "DBT_PROFILE", "DBT_PROFILES_DIR", "DBT_TARGET_PATH", "DBT_PROJECT_DIR")


# -- landing files: the sources' data, observed by content


def landing_location(source: Node) -> str | None:
    """Where a source's landing files are (dbt-duckdb's ``external_location``, names filled in), or None."""
    location = source.config.get("external_location") or source.meta.get("external_location")
    if not location:
        return None
    return str(location).replace("{name}", source.name).replace("{identifier}", str(source.get("identifier") or ""))


def landing_files(domain: Domain, location: str | None) -> list[Path] | None:
    """The local files a landing location names, or None when it names none (or only remote ones)."""
    if not location:
        return None
    quoted = re.findall(r"'([^']+)'|\"([^\"]+)\"", location)
    candidates = [a or b for a, b in quoted] or [location]
    files: list[Path] = []
    for candidate in candidates:
        if re.match(r"^[a-z][a-z0-9+.-]*://", candidate, re.I):
            return None  # remote (s3://, https://): not observable from here
        path = Path(candidate).expanduser()
        path = path if path.is_absolute() else domain.path / path
        if any(ch in str(path) for ch in "*?["):
            files.extend(sorted(path.parent.glob(path.name)) if path.parent.is_dir() else [])
        elif path.exists():
            files.append(path)
    return files or None


def landing_fingerprint(domain: Domain, source: Node | str | None) -> str | None:
    """A digest of a source's landing files (a Node, or its landing location), or None when it has none."""
    location = landing_location(source) if isinstance(source, Node) else source
    files = landing_files(domain, location)
    if files is None:
        return None
    parts = []
    for path in files:
        try:
            parts.append(f"{path.name}:{file_sha256(path)}" if path.is_file() else f"{path.name}:dir:{tree_stat(path)}")
        except OSError:
            parts.append(f"{path.name}:unreadable")
    return "|".join(sorted(parts))


def tree_stat(folder: Path) -> str:
    """A digest of every file's path, size and modification time below ``folder``."""
    digest = hashlib.sha256()
    for here, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(here) / name
            try:
                stat = path.stat()
            except OSError:
                continue
            digest.update(f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


# -- environment variables


def _text_files(domain: Domain) -> Iterable[Path]:
    """Every file dbt parses for the domain, as dbt finds them (hidden folders included), its installed packages
    too but not the mesh's generated ones: they never read the environment, and carry other domains' text."""
    from mesh_tools.dbt.staleness import parse_files

    return (path for path in parse_files(domain, stubs=False) if path.name != MARKER)


def env_names(domain: Domain) -> tuple[set[str], str | None]:
    """The environment variables the domain's code reads by name, and where it reads one whose name is
    computed (``env_var(prefix ~ target.name)``: no digest can follow it), or None."""
    names: set[str] = set()
    computed = None
    for path in _text_files(domain):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if "env_var" not in text:
            continue
        literal = {m.start() for m in _ENV_LITERAL.finditer(text)}
        names.update(a or b for a, b in _ENV_LITERAL.findall(text))
        for call in _ENV_CALL.finditer(text):
            if call.start() not in literal and computed is None:
                line = text.count("\n", 0, call.start()) + 1
                computed = f"{os.path.relpath(path, domain.path)}:{line}"
    return names, computed


def project_env_names(domain: Domain) -> set[str]:
    """The variables the dbt_project.yml of the domain and of its local packages read: vars, hooks and configs
    rendered from them reach any model, so a change there builds the domain in full."""
    names: set[str] = set()
    for folder in (domain.path, *domain.local_packages):
        try:
            text = (folder / "dbt_project.yml").read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        names.update(a or b for a, b in _ENV_LITERAL.findall(text))
    return names


def env_digests(names: Iterable[str]) -> dict[str, str]:
    """Each variable's digest (never its value): unset and empty differ, as they do for dbt."""
    out = {}
    for name in sorted(set(names)):
        value = os.environ.get(name)
        out[name] = "unset" if value is None else hashlib.sha256(f"{name}\0{value}".encode()).hexdigest()[:16]
    return out


def profile_env_digest(profiles_file: Path) -> str:
    """A digest of every variable the profiles.yml reads, and of dbt's own: the target it resolves to."""
    names = set(DBT_ENV)
    try:
        text = profiles_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    names.update(a or b for a, b in _ENV_LITERAL.findall(text))
    computed = len(_ENV_CALL.findall(text)) > len(_ENV_LITERAL.findall(text))
    digest = hashlib.sha256(repr(sorted(env_digests(names).items())).encode())
    if computed:  # a name computed inside profiles.yml: every variable might matter
        digest.update(repr(sorted(env_digests(os.environ).items())).encode())
    return digest.hexdigest()


def target_identity(profile: Any) -> str:
    """What a target builds into, as one digest: engine, target, database, schema, files, server."""
    parts = [
        profile.adapter, profile.target, str(profile.database), str(profile.schema),
        *[str(f) for f in profile.files], *profile.remote, str(profile.identity),
    ]  # fmt: skip
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def readers_of_env(manifest: Manifest, project: str, changed: set[str]) -> dict[str, str]:
    """The project's models, seeds and snapshots whose SQL, or a macro they call, reads one of ``changed``:
    unique_id -> why. (Configs and locations that read them are rendered at parse: dbt's state
    comparison and the landing files see those.)"""
    reads: dict[str, set[str]] = {}
    for uid, macro in manifest.macros.items():
        sql = str(macro.get("macro_sql") or "")
        reads[uid] = {n for n in changed if n in sql and "env_var" in sql}
    # a macro reads what the macros it calls read
    for _ in range(8):
        grew = False
        for uid, macro in manifest.macros.items():
            for callee in (macro.get("depends_on") or {}).get("macros") or []:
                extra = reads.get(callee, set()) - reads[uid]
                if extra:
                    reads[uid] |= extra
                    grew = True
        if not grew:
            break
    out: dict[str, str] = {}
    for node in manifest.nodes.values():
        if node.package != project or node.resource_type not in BUILT:
            continue
        code = str(node.get("raw_code") or "")
        found = {n for n in changed if n in code and "env_var" in code}
        for macro in (node.get("depends_on") or {}).get("macros") or []:
            found |= reads.get(macro, set())
        if found:
            out[node.unique_id] = (
                f"environment variable {sorted(found)[0]} changed (its SQL or a macro it calls reads it)"
            )
    return out


_NODE_KEYS = (
    "config", "database", "schema", "alias", "relation_name", "description", "columns", "meta", "tags", "depends_on",
    "contract", "constraints", "access", "group", "version", "latest_version",
)  # fmt: skip
_SOURCE_KEYS = ("relation_name", "database", "schema", "identifier", "loaded_at_field", "freshness", "columns")


def rendered_changes(before: Manifest, now: Manifest, project: str) -> dict[str, str] | None:
    """What a changed environment variable changed in the project as dbt renders it (a config, a description,
    a source's relation): node -> why; None when the nodes themselves differ (one enabled or disabled):
    then dbt's own state comparison decides. A source's landing location is left out: its files are
    compared by content, so a location that moved with the same data rebuilds nothing."""
    own = lambda m: {u for u, n in m.nodes.items() if n.package == project and n.resource_type in BUILT}  # noqa: E731
    if own(before) != own(now) or set(before.sources) != set(now.sources):
        return None
    out: dict[str, str] = {}
    for uid in sorted(own(now)):
        old, new = before.nodes[uid], now.nodes[uid]
        keys = [k for k in _NODE_KEYS if old.get(k) != new.get(k)]
        if keys:
            out[uid] = f"its {keys[0].replace('_', ' ')} changed (an environment variable it reads changed)"
    for uid, new in now.sources.items():
        old = before.sources[uid]
        moved = landing_location(old) is not None and landing_location(new) is not None
        keys = [k for k in _SOURCE_KEYS if old.get(k) != new.get(k) and not (moved and k == "relation_name")]
        if keys:
            out[uid] = f"source {new.name} now reads another relation ({keys[0].replace('_', ' ')} changed)"
    return out


# -- files and relations read by compiled SQL


def node_reads(domain: Domain, manifest: Manifest, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """For each of the project's models and snapshots: {"files": [...], "opaque": why or None}, from the
    compiled SQL of those this build compiled; the others keep what an earlier build found."""
    previous = previous or {}
    dialect = sql_dialect(manifest.adapter)
    relations = []
    for node in [*manifest.nodes.values(), *manifest.sources.values()]:
        if node.resource_type in (*BUILT, "source"):
            name = node.get("identifier") if node.resource_type == "source" else (node.get("alias") or node.name)
            relations.append(relation_key(node.get("database"), node.get("schema"), name))
    known = known_tails(relations)
    landing = _landing_paths(manifest)  # a source's landing files are observed as that source's
    out: dict[str, Any] = {}
    for node in manifest.nodes.values():
        if node.package != domain.name or node.resource_type not in ("model", "snapshot"):
            continue
        if node.get("language") == "python":
            out[node.unique_id] = {"files": [], "opaque": "it is a Python model: what it reads cannot be observed"}
            continue
        compiled = node.get("compiled_code")
        if not node.get("compiled") or not isinstance(compiled, str):
            if node.unique_id in previous:
                out[node.unique_id] = previous[node.unique_id]
            else:
                out[node.unique_id] = {"files": [], "opaque": "its compiled SQL has not been seen by a mesh build yet"}
            continue
        reads = sql_reads(compiled, dialect, known)
        compiling = compile_time_reads(node, manifest, _own_packages(domain), dialect, known)
        calling = function_reads(node, manifest, dialect, known)
        files = [f for f in dict.fromkeys(reads.files + compiling.files + calling.files) if f not in landing]
        out[node.unique_id] = {"files": files, "opaque": reads.opaque or compiling.opaque or calling.opaque}
    return out


def function_reads(node: Node, manifest: Manifest, dialect: str, known: set[tuple[str, ...]]) -> Any:
    """What the user-defined functions a model calls read (dbt 1.11 ``functions``, and the functions they call):
    its compiled SQL holds only their names, and a function's body may read a file or a relation.

    A function dbt did not compile in this build (a state-aware build selects only what changed) is read from
    its code when that holds no Jinja; otherwise, or in another language, what it reads cannot be observed."""
    from mesh_tools.dbt.engines.sqlreads import Reads

    reads = Reads()
    stack = [p for p in node.depends_on if p.startswith("function.")]
    seen: set[str] = set()
    while stack:
        uid = stack.pop()
        if uid in seen:
            continue
        seen.add(uid)
        function, name = manifest.functions.get(uid), name_of(uid)
        if function is None:
            reads.refuse(f"it calls function {name}, which its manifest does not hold")
            continue
        language = str(function.get("language") or "sql")
        body = function.get("compiled_code") if function.get("compiled") else function.get("raw_code")
        if language != "sql" or not isinstance(body, str) or "{{" in body or "{%" in body:
            why = f"a {language} function" if language != "sql" else "SQL built by Jinja this build did not compile"
            reads.refuse(f"it calls function {name}, {why}: what that reads cannot be observed")
            continue
        found = sql_reads(f"select ({body.strip().rstrip(';')})", dialect, known)
        reads.files += found.files
        if found.opaque:
            reads.refuse(f"{found.opaque}, in function {name} it calls")
        stack += [p for p in function.depends_on if p.startswith("function.")]
    return reads


# Jinja that reads the clock while a model compiles: its compiled SQL holds only the value it read.
_JINJA_CLOCK = re.compile(r"\brun_started_at\b|modules\.(?:datetime|time)\b[\w.]*\b(?:now|utcnow|today|time)\b")
_JINJA_BLOCK = re.compile(r"\{%.*?%\}|\{\{.*?\}\}", re.S)
_CALL_STATEMENT = re.compile(r"\{%-?\s*call\s+statement\b.*?%\}(.*?)\{%-?\s*endcall\s*-?%\}", re.S)
_SQL_WORDS = re.compile(r"\b(?:select|from)\b", re.I)
_BUILT_AT_RUN_TIME = "it runs SQL built at run time while it compiles (run_query): what that reads cannot be observed"


def compile_time_reads(node: Node, manifest: Manifest, own: set[str], dialect: str, known: set[tuple[str, ...]]) -> Any:
    """What a model reads while it compiles, which its compiled SQL holds only as values: the SQL it runs through
    ``run_query`` or a ``statement`` block (in its own code or a macro it calls), and the clock read in Jinja.

    SQL written as a literal is analysed as compiled SQL is; SQL built at run time in the domain's own code or
    a local package makes the model opaque (an installed package's macros, such as dbt_utils', are taken to
    query the relations they are given, which dbt's graph already follows)."""
    from mesh_tools.dbt.engines.sqlreads import Reads

    reads = Reads()
    for package, text in _code_and_macros(node, manifest):
        mine = package in own
        if mine and _JINJA_CLOCK.search(text):
            reads.refuse(f"it reads the clock while it compiles ({_JINJA_CLOCK.search(text).group(0)})")  # type: ignore[union-attr]
        pieces = [m.group(1) for m in _CALL_STATEMENT.finditer(text)]
        for block in _JINJA_BLOCK.findall(text):
            if "run_query" not in block and "get_query_results" not in block:
                continue
            literals = [a or b for a, b in re.findall(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"", block)]
            sql = [x for x in literals if _SQL_WORDS.search(x)]
            if "~" in block or not sql:  # concatenated or passed in: built at run time
                if mine:
                    reads.refuse(_BUILT_AT_RUN_TIME)
                continue
            pieces += sql
        for piece in pieces:
            if "{{" in piece or "{%" in piece:
                if mine:
                    reads.refuse("it runs SQL built at run time while it compiles (a statement block)")
                continue
            found = sql_reads(piece, dialect, known)
            reads.files += found.files
            if found.opaque and mine:
                reads.refuse(f"{found.opaque}, while it compiles")
    return reads


def _code_and_macros(node: Node, manifest: Manifest) -> list[tuple[str, str]]:
    """(package, text) of a model's own code and of every macro it calls, directly or through other macros."""
    found = [(node.package, str(node.get("raw_code") or ""))]
    seen: set[str] = set()
    stack = list((node.get("depends_on") or {}).get("macros") or [])
    while stack:
        uid = stack.pop()
        macro = manifest.macros.get(uid)
        if uid in seen or macro is None:
            continue
        seen.add(uid)
        found.append((macro.package, str(macro.get("macro_sql") or "")))
        stack.extend((macro.get("depends_on") or {}).get("macros") or [])
    return found


def _own_packages(domain: Domain) -> set[str]:
    """The domain's project and its local packages, by name: the code its team (or the mesh's) wrote."""
    from mesh_tools.core.yamlfile import load_yaml

    names = {domain.name}
    for folder in domain.local_packages:
        document = load_yaml(folder / "dbt_project.yml", required=False)
        data = document.data if document is not None else None
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            names.add(data["name"])
    return names


def _landing_paths(manifest: Manifest) -> set[str]:
    """The paths, as written, inside the landing locations of the project's sources."""
    found: set[str] = set()
    for source in manifest.sources.values():
        location = landing_location(source)
        if location:
            found.update(a or b for a, b in re.findall(r"'([^']+)'|\"([^\"]+)\"", location))
            found.add(location)
    return found


def files_fingerprint(domain: Domain, written: list[str]) -> str:
    """A digest of the content of the files a node reads (globs expanded; a missing file counts)."""
    digest = hashlib.sha256()
    for path in resolve_files(domain.path, written):
        try:
            digest.update(f"{path.name}:{file_sha256(path) if path.is_file() else 'not a file'}\n".encode())
        except OSError:
            digest.update(f"{path.name}:unreadable\n".encode())
    if not written:
        return ""
    return digest.hexdigest()[:24]


def fingerprint_reads(domain: Domain, reads: dict[str, Any]) -> dict[str, str]:
    """node -> digest of the files it reads, for the nodes that read files."""
    return {uid: files_fingerprint(domain, r["files"]) for uid, r in reads.items() if r.get("files")}


# -- hooks


def hook_writes(statements: Iterable[str], manifest: Manifest, dialect: str) -> list[str]:
    """The statements an ``on-run-start`` hook ran that write something other than a schema, or than the
    relation of a source whose landing files the mesh fingerprints (a hook that makes a source readable, a view
    over its landing file, is seen through those files): such output cannot be fingerprinted, so the domain is
    built in full."""
    import sqlglot
    from sqlglot import exp

    landed = known_tails(
        relation_key(s.get("database"), s.get("schema"), s.get("identifier") or s.name)
        for s in manifest.sources.values()
        if landing_location(s)
    )
    writes = (exp.Create, exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Drop, exp.Alter, exp.TruncateTable,
              exp.Copy)  # fmt: skip
    found: list[str] = []
    for statement in statements:
        text = " ".join(_QUERY_COMMENT.sub("", statement).split())  # dbt's query comment says nothing here
        try:
            trees: list[exp.Expr | None] = [t for t in sqlglot.parse(statement, read=dialect) if t is not None]
        except Exception:  # noqa: BLE001 - a statement sqlglot cannot read may write anything
            trees = [None]
        for tree in trees:
            if tree is not None and not isinstance(tree, writes):
                if isinstance(tree, exp.Command) and tree.name.upper() in _WRITING_COMMANDS:
                    found.append(text[:160])
                continue
            if isinstance(tree, exp.Create) and str(tree.args.get("kind") or "").upper() == "SCHEMA":
                continue
            target = tree.find(exp.Table) if tree is not None else None
            if target is not None and relation_key(target.catalog, target.db, target.name) in landed:
                continue
            found.append(text[:160])
    return list(dict.fromkeys(found))


_QUERY_COMMENT = re.compile(r"^\s*/\*.*?\*/\s*", re.S)
_WRITING_COMMANDS = ("COPY", "INSERT", "CREATE", "REPLACE", "EXPORT", "IMPORT", "UPSERT")


# -- storage


def storage_shared(mesh: Any, domain: Domain, files: Iterable[Path], target: str | None) -> bool:
    """Whether another domain of the mesh opens one of ``files`` (its builds change them, not only this one's)."""
    from mesh_tools.core.errors import MeshError
    from mesh_tools.dbt import profiles

    mine = set(files)
    for other in mesh.domains.values() if mine else ():
        if other.name == domain.name:
            continue
        try:
            theirs = profiles.load_profile(other.path, target, mesh.profiles_dir, require_env=False)
        except MeshError:
            continue
        if mine & set(theirs.files):
            return True
    return False


# -- the run footprint


def singular_tests(manifest: Manifest | None) -> list[str]:
    """The run files of the project's singular tests (below ``target/run``): written by tests, not relations."""
    found = set()
    for node in manifest.nodes.values() if manifest is not None else ():
        if node.resource_type in ("test", "unit_test"):
            found.add(f"{node.package}/{node.get('original_file_path') or ''}")
    return sorted(found)


def run_footprint(domain: Domain, tests: Iterable[str] = ()) -> dict[str, list[int]]:
    """Size and modification time of every file dbt wrote below ``target/run`` for a model, seed or
    snapshot; ``tests`` (``singular_tests``) and the files of generic and unit tests, written below their
    YAML file's path, are left out: running tests by hand writes no relation."""
    folder = domain.target_dir / "run"
    skip = set(tests)
    found: dict[str, list[int]] = {}
    for here, dirs, files in os.walk(folder):
        dirs.sort()
        for name in files:
            path = Path(here) / name
            relative = path.relative_to(folder).as_posix()
            if relative in skip or ".yml/" in relative or ".yaml/" in relative:
                continue
            try:
                stat = path.lstat()
            except OSError:
                continue
            found[relative] = [stat.st_size, stat.st_mtime_ns]
    return found


def footprint_changes(before: dict[str, Any] | None, now: dict[str, list[int]]) -> list[str]:
    """The run files written, rewritten or removed since ``before`` (the mesh's record), sorted."""
    if before is None:
        return []
    changed = [p for p, v in now.items() if before.get(p) != v]
    changed += [p for p in before if p not in now]
    return sorted(set(changed))


def run_file_of(node: Node) -> str:
    """Where dbt writes the SQL it runs for a model, seed or snapshot, below ``target/run``."""
    return f"{node.package}/{node.get('original_file_path') or node.file}"


# -- storage files, seeds, project files, sources' change detection


def storage_fingerprint(files: Iterable[Path], remote: Iterable[str], identity: str | None = None) -> list[Any] | None:
    """Size and modification time of the storage a target opens: a DuckDB file and its WAL, or every
    file below a local Spark warehouse folder (a dropped table removes its files).

    A warehouse (``identity``: its server, database, schema and role) has no files to observe: its
    identity alone is recorded, so a profile pointed elsewhere means a full build, and its relations
    are checked through dbt every time. None when the storage is otherwise not only local (s3://).
    """
    files = list(files)
    if identity and not files:
        return [[identity, "warehouse"]]
    if list(remote) or not files:
        return None
    found: list[Any] = []
    for path in files:
        if path.is_dir():
            found.append([str(path), "tree", tree_stat(path)])
            continue
        for candidate in (path, path.with_name(path.name + ".wal")):
            try:
                stat = candidate.stat()
            except FileNotFoundError:
                found.append([str(candidate), None])
                continue
            found.append([str(candidate), stat.st_size, stat.st_mtime_ns])
    return found


def project_digest(domain: Domain) -> str:
    """A digest of the dbt_project.yml of the domain and of its local packages (vars, hooks, configs)."""
    digest = hashlib.sha256()
    for folder in (domain.path, *domain.local_packages):
        digest.update(f"{folder.name}:{file_digest(folder / 'dbt_project.yml')}\n".encode())
    return digest.hexdigest()


def seeds_of(manifest: Manifest) -> list[Node]:
    """Every seed the domain's build loads: its own and its packages' (dbt compares only the path of one over 1 MB)."""
    return [n for n in manifest.nodes.values() if n.resource_type == "seed"]


def seed_file(domain: Domain, seed: Node) -> Path:
    """Where a seed's CSV file is: in the domain's folder, or in the installed package that holds it."""
    if seed.package == domain.name:
        return domain.path / seed.file
    return domain.packages_dir / seed.package / seed.file


def seed_digests(domain: Domain, manifest: Manifest) -> dict[str, str | None]:
    """seed unique_id -> SHA-256 of its CSV file (None: missing)."""
    return {seed.unique_id: file_digest(seed_file(domain, seed)) for seed in seeds_of(manifest)}


def freshness_sources(manifest: Manifest) -> list[Node]:
    """The project's sources that `dbt source freshness` measures (a loaded_at_field and a threshold)."""
    found = []
    for source in manifest.own_sources():
        rule = source.get("freshness") or {}
        has_rule = isinstance(rule, dict) and any(
            isinstance(rule.get(k), dict) and rule[k].get("count") for k in ("warn_after", "error_after")
        )
        if source.get("loaded_at_field") and has_rule:
            found.append(source)
    return found


def change_detection(source: Node) -> str | None:
    """How a source declares its changes are seen (``meta.change_detection``): "always", "row_count" or None."""
    value = source.meta.get("change_detection")
    return str(value).strip().lower() if value else None


def file_digest(path: Path) -> str | None:
    """The SHA-256 of a file, or None when it is not a readable file."""
    try:
        return file_sha256(path) if path.is_file() else None
    except OSError:
        return None


def file_stat(path: Path | None) -> list[int] | None:
    """[size, mtime_ns] of a file, or None (no path, or it cannot be read)."""
    try:
        stat = path.stat() if path is not None else None
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns] if stat is not None else None
