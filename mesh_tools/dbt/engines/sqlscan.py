"""Find, in a domain's SQL, what reaches outside the domain: another domain's storage, or the exchange.

The SQL is tokenized and parsed with sqlglot, comments and all (a ``;`` or a path inside a comment
is no statement), after Jinja is taken out: ``{{ ... }}`` becomes an identifier, and the string
literals inside ``{% ... %}`` tags (``run_query("...")``, ``statement`` blocks) are scanned as SQL of
their own. Paths are resolved, not pattern-matched: relative to the domain's folder, with a
``duckdb:``/``file:`` prefix and anything from the first glob character on taken off.

Used by governance (GOV205, over compiled SQL, hooks and macros) and by stitching (over the
domain's files, before dbt runs). SQL assembled at run time from values is out of its reach.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# sqlglot says when it falls back to a generic command; that is expected here, and not the user's concern
logging.getLogger("sqlglot").setLevel(logging.ERROR)

_EXPRESSION = re.compile(r"\{\{.*?\}\}", re.S)
_TAG = re.compile(r"\{%.*?%\}", re.S)
_JINJA_COMMENT = re.compile(r"\{#.*?#\}", re.S)
_STRING = re.compile(r"""'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)\"""", re.S)
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)
_TYPE_PREFIX = re.compile(r"^(?:duckdb|sqlite|file):", re.I)
_GLOB = re.compile(r"[*?\[{]")
_KEYWORDS = {
    "ATTACH", "INSERT", "UPDATE", "DELETE", "MERGE", "COPY", "CREATE", "DROP", "ALTER", "TRUNCATE", "USE",
    "EXPORT", "IMPORT", "REPLACE", "UPSERT",
}  # fmt: skip
# A piece can reach outside only through one of these keywords or a string literal; the tokenizer
# (about a third of a millisecond a piece) runs only on pieces that hold one or the other. Never a
# keyword token without these letters standing alone, never a string without its quote character.
_KEYWORD_TEXT = re.compile(r"(?<![A-Za-z_])(?:" + "|".join(sorted(_KEYWORDS)) + r")(?![A-Za-z0-9_])", re.I)
_QUOTE_CHARS: dict[str, frozenset[str]] = {}


def _may_reach(text: str, dialect: str) -> bool:
    if dialect not in _QUOTE_CHARS:
        from sqlglot.dialects.dialect import Dialect

        tokenizer = Dialect.get_or_raise(dialect).tokenizer_class
        starts = [*getattr(tokenizer, "_QUOTES", {"'": "'"}), *getattr(tokenizer, "_FORMAT_STRINGS", {})]
        _QUOTE_CHARS[dialect] = frozenset(c for key in starts for c in key if not c.isalnum() and c != "&") | {"'"}
    return any(c in text for c in _QUOTE_CHARS[dialect]) or _KEYWORD_TEXT.search(text) is not None


_WRITES = ("Insert", "Update", "Delete", "Merge", "Create", "Drop", "Alter", "TruncateTable", "Copy")
EXCHANGE = "the exchange"


@dataclass(frozen=True)
class Reach:
    """One way a piece of SQL reaches outside its domain."""

    owner: str  # another domain's name, or EXCHANGE
    action: str  # "attaches", "writes", "reads"
    what: str  # the path or statement, as written

    @property
    def target(self) -> str:
        return self.owner if self.owner == EXCHANGE else f"{self.owner}'s storage"

    def describe(self) -> str:
        if self.action == "reads":
            return (
                f"reads {EXCHANGE} directly: {self.what} (read products through ref(), where pins, access and "
                "PII policies apply)"
            )
        return f"{self.action} {self.target}: {self.what}"


@dataclass
class Territory:
    """What belongs to other domains and to the exchange, as one domain sees it."""

    base: Path
    exchange: Path
    folders: dict[str, Path]
    catalogs: dict[str, str] = field(default_factory=dict)  # catalog name (lower case) -> its domain

    @classmethod
    def of(cls, mesh: Any, domain: str, manifests: Mapping[str, Any] | None = None) -> Territory:
        """For ``domain`` of ``mesh``; other domains' manifests (when given) name their catalogs."""
        manifests = manifests or {}
        folders = {o: spec.path.resolve() for o, spec in mesh.domains.items() if o != domain}
        own = {name.lower() for name in _databases(manifests.get(domain))}
        catalogs: dict[str, str] = {}
        for other in folders:
            for name in {other} | _databases(manifests.get(other)):
                if name and name.lower() not in own and name.lower() != domain.lower():
                    catalogs[name.lower()] = other
        return cls(mesh.domains[domain].path.resolve(), mesh.exchange_path.resolve(), folders, catalogs)

    def owner_of_path(self, text: str) -> str | None:
        """EXCHANGE, another domain's name, or None for a path of this domain, elsewhere, or remote."""
        text = _TYPE_PREFIX.sub("", text.strip())
        if not text or _URL.match(text) or text.startswith(":memory:"):
            return None
        text = _GLOB.split(text, 1)[0] or "."  # a glob reaches whatever its fixed part is in
        try:
            path = Path(text).expanduser()
            resolved = (path if path.is_absolute() else self.base / path).resolve()
        except (OSError, RuntimeError, ValueError):
            return None
        if resolved == self.exchange or self.exchange in resolved.parents:
            return EXCHANGE
        if resolved == self.base or self.base in resolved.parents:
            return None
        for other, folder in self.folders.items():
            if resolved == folder or folder in resolved.parents:
                return other
        return None


def _databases(manifest: Any) -> set[str]:
    """The databases a domain's manifest (a model ``Manifest``) builds into: its catalogs."""
    nodes = getattr(manifest, "nodes", None) or {}
    return {str(n.get("database")) for n in nodes.values() if n.get("database")}


class Scanner:
    """Scans one domain's SQL pieces in order (an ATTACH or USE carries over to what follows)."""

    def __init__(self, territory: Territory, dialect: str = "duckdb"):
        self.territory = territory
        self.dialect = dialect
        self.aliases: dict[str, str] = {}  # attached alias (lower case) -> its owner
        self.current: str | None = None  # the owner of the catalog a USE switched to

    def scan(self, sql: str) -> list[Reach]:
        found: list[Reach] = []
        for text in _pieces(sql):
            for reach in self._scan_piece(text):
                if reach not in found:
                    found.append(reach)
        return found

    def _scan_piece(self, text: str) -> Iterator[Reach]:
        from sqlglot.dialects.dialect import Dialect

        if not _may_reach(text, self.dialect):
            return
        try:
            tokens = Dialect.get_or_raise(self.dialect).tokenize(text)
        except Exception:  # noqa: BLE001 - text sqlglot cannot even tokenize: look at its strings only
            yield from self._exchange_reads(m.group(1) or m.group(2) or "" for m in _STRING.finditer(text))
            return
        for statement in self._statements(text, tokens):
            yield from self._reaches(*statement)

    # -- tokens and statements
    def _statements(self, text: str, tokens: list[Any]) -> Iterator[tuple[str, list[Any]]]:
        chunk: list[Any] = []
        for token in [*tokens, None]:
            if token is None or token.token_type.name == "SEMICOLON":
                if chunk:
                    yield text[chunk[0].start : chunk[-1].end + 1], chunk
                chunk = []
            else:
                chunk.append(token)

    def _reaches(self, text: str, tokens: list[Any]) -> Iterator[Reach]:
        words = {str(t.text).upper() for t in tokens if t.token_type.name != "STRING"}
        strings = [t for t in tokens if t.token_type.name == "STRING"]
        if not (words & _KEYWORDS) and not strings:
            return
        upper = [str(t.text).upper() for t in tokens[:3]]
        modelled = words & _KEYWORDS and upper != ["COPY", "FROM", "DATABASE"]  # sqlglot misreads that one
        tree = self._parse(text) if modelled else None
        handled: set[str] = set()
        if tree is not None:
            yield from self._from_tree(tree, handled)
        if tree is None and words & {"ATTACH", "EXPORT", "COPY", "IMPORT"}:
            yield from self._from_tokens(tokens, handled)
        yield from self._exchange_reads(t.text for t in strings if t.text not in handled)

    def _exchange_reads(self, literals: Iterable[str]) -> Iterator[Reach]:
        """A literal naming a place in the exchange, other than what a statement attaches or writes: a direct read."""
        for literal in literals:
            if self.territory.owner_of_path(literal) == EXCHANGE:
                yield Reach(EXCHANGE, "reads", f"'{literal}'")

    def _parse(self, text: str) -> Any:
        import sqlglot
        from sqlglot import exp

        try:
            tree = sqlglot.parse_one(text, read=self.dialect)
        except Exception:  # noqa: BLE001 - sqlglot raises many kinds; the tokens are looked at instead
            return None
        return None if isinstance(tree, exp.Command | exp.Alias | exp.Column) else tree

    def _from_tree(self, tree: Any, handled: set[str]) -> Iterator[Reach]:
        from sqlglot import exp

        if isinstance(tree, exp.Attach):
            target = tree.this
            alias = target.alias if isinstance(target, exp.Alias) else ""
            literal = target.this if isinstance(target, exp.Alias) else target
            path = literal.name if isinstance(literal, exp.Literal) else ""
            handled.add(path)
            owner = self.territory.owner_of_path(path)
            if owner:
                stem = Path(_TYPE_PREFIX.sub("", path)).stem
                self.aliases[(alias or stem).lower()] = owner
                yield Reach(owner, "attaches", f"'{path}'")
            return
        if isinstance(tree, exp.Use):
            table = tree.this
            name = (table.catalog or table.db or table.name) if isinstance(table, exp.Table) else str(table)
            self.current = self._owner_of_catalog(name)
            return
        if type(tree).__name__ not in _WRITES:
            return
        if isinstance(tree, exp.Copy) and not tree.args.get("kind"):  # COPY ... TO 'file'
            for file in tree.args.get("files") or []:
                if isinstance(file, exp.Literal):
                    handled.add(file.name)
                    owner = self.territory.owner_of_path(file.name)
                    if owner:
                        yield Reach(owner, "writes", f"'{file.name}'")
            return
        targets = list(tree.args.get("expressions") or []) if isinstance(tree, exp.TruncateTable) else []
        targets += list(tree.args.get("tables") or []) if isinstance(tree, exp.Drop) else []
        this = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
        targets.append(this)
        for table in targets:
            if not isinstance(table, exp.Table):
                continue
            if table.catalog:
                owner = self._owner_of_catalog(table.catalog)
            elif table.db:  # DuckDB reads `x.t` as catalog x when x is an attached database
                owner = self._owner_of_catalog(table.db)
            else:
                owner = self.current
            if owner:
                yield Reach(owner, "writes", " ".join(tree.sql(dialect="duckdb").split())[:160])

    def _from_tokens(self, tokens: list[Any], handled: set[str]) -> Iterator[Reach]:
        """Statements sqlglot does not model (EXPORT DATABASE, COPY FROM DATABASE, ...): their paths
        and the catalogs they name after TO."""
        first = str(tokens[0].text).upper()
        action = "attaches" if first == "ATTACH" else "writes"
        for token in tokens:
            if token.token_type.name == "STRING":
                handled.add(token.text)
                owner = self.territory.owner_of_path(token.text)
                if owner:
                    yield Reach(owner, action, f"'{token.text}'")
        names = [str(t.text) for t in tokens]
        upper = [n.upper() for n in names]
        if "TO" in upper:
            after = names[upper.index("TO") + 1 :]
            for name in after[:1]:
                owner = self._owner_of_catalog(name)
                if owner:
                    yield Reach(owner, "writes", " ".join(names)[:160])

    def _owner_of_catalog(self, name: str) -> str | None:
        key = str(name).strip('"`').lower()
        return self.aliases.get(key) or self.territory.catalogs.get(key)


def _pieces(sql: str) -> Iterable[str]:
    """The SQL without Jinja, then each string literal written inside a Jinja tag or expression."""
    sql = _JINJA_COMMENT.sub(" ", sql)
    inner = [m.group(0) for m in _TAG.finditer(sql)] + [m.group(0) for m in _EXPRESSION.finditer(sql)]
    yield _TAG.sub(" ", _EXPRESSION.sub("__jinja__", sql))
    for block in inner:
        for match in _STRING.finditer(block):
            literal = match.group(1) if match.group(1) is not None else match.group(2)
            if literal and len(literal) > 6:
                yield literal
