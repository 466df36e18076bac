"""Load YAML files while remembering where each value was written, for located errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mesh_tools.core.errors import ConfigError, display_path, located

Loc = tuple[Any, ...]


@dataclass
class YamlDoc:
    """A parsed YAML document plus the line of every key and list item in it."""

    path: Path
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int | None:
        """Line of ``loc`` or of its nearest written parent."""
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), 1)

    def error(self, loc: Loc, message: str) -> ConfigError:
        return ConfigError(located(self.display, self.line_of(loc), message))

    @property
    def display(self) -> str:
        return display_path(self.path)


# Where the user started the command; worker processes change their working directory later.


# Limits on what a configuration file may hold: far above any real dbt or mesh file, far below what
# hangs a command (an alias bomb expands to billions of values; 10,000 nested levels overflow).
MAX_BYTES = 4 * 2**20
MAX_DEPTH = 64
MAX_ALIASES = 200
MAX_VALUES = 200_000


def _line(mark: Any) -> int | None:
    """The 1-based line of a YAML mark (a mark may be missing)."""
    return mark.line + 1 if mark is not None else None


class _Limit(Exception):
    def __init__(self, line: int | None, message: str):
        super().__init__(message)
        self.line, self.message = line, message


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, counting aliases and nesting while it composes."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise _Limit(mark.line + 1, f"more than {MAX_ALIASES} aliases (*name)")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _Limit(mark.line + 1, f"nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml(path: Path, *, required: bool = True, text: str | None = None) -> YamlDoc | None:
    """Parse ``path`` (or ``text``, read from it); malformed YAML and duplicate keys become one located ConfigError.

    A file larger than MAX_BYTES, nested deeper than MAX_DEPTH, with more than MAX_ALIASES aliases or
    expanding to more than MAX_VALUES values is refused (a configuration error, never a hang)."""
    if text is None:
        if not path.is_file():
            if required:
                raise ConfigError(f"{display_path(path)}: file not found")
            return None
        text = _read_text(path, MAX_BYTES, "a configuration file", "Is it the right file?")
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise ConfigError(located(display_path(path), line, "a NUL byte: this is not a text file. Save it as UTF-8."))
    doc = YamlDoc(path=path, data=None)
    try:
        loader = _BoundedLoader(text)
    except yaml.YAMLError as exc:  # the reader refuses control characters before parsing starts
        raise ConfigError(f"{doc.display}: not a YAML text file ({str(exc).splitlines()[0]}). Fix it.") from None
    try:
        node = loader.get_single_node()
        if node is not None:
            doc.lines[()] = node.start_mark.line + 1
            doc.data = _build(loader, node, (), doc, [0])
    except _Limit as exc:
        raise ConfigError(
            located(doc.display, exc.line, f"{exc.message}: more than a configuration file needs. Simplify it.")
        ) from None
    except RecursionError:
        raise ConfigError(f"{doc.display}: nested too deeply to read. Simplify it.") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(
            located(doc.display, at, f"malformed YAML: {problem}. Fix the syntax and run again.", col)
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{doc.display}: malformed YAML: {exc}") from None
    finally:
        loader.dispose()
    return doc


def comment_spans(text: str) -> list[tuple[int, int]] | None:
    """Where the comments of a YAML text are, as (start, end) character offsets; None if it does not scan.

    A comment is a ``#`` outside any token (a plain scalar's ``a#b``, a quoted ``"# x"`` and the lines of a
    block scalar are values) running to the end of its line, or one on a block scalar's header line
    (``key: | # note``). Only PyYAML's scanner runs: no document is built, so an alias bomb costs nothing.
    """
    spans: list[tuple[int, int]] = []

    def comments_in(start: int, end: int) -> None:
        at = text.find("#", start, end)
        while at != -1:
            stop = text.find("\n", at, end)
            stop = end if stop == -1 else stop
            spans.append((at, stop))
            at = text.find("#", stop, end)

    previous = 0
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            start, end = token.start_mark.index, token.end_mark.index
            if start < previous:  # zero-width tokens (block ends, implicit keys) sit inside a gap
                continue
            comments_in(previous, start)
            if isinstance(token, yaml.ScalarToken) and token.style in ("|", ">"):
                header = text.find("\n", start, end)
                header = end if header == -1 else header
                hashes = [i for i in range(start, header) if text[i] == "#" and text[i - 1] in " \t"]
                if hashes:
                    spans.append((hashes[0], header))
            previous = max(previous, end)
    except yaml.YAMLError:
        return None
    comments_in(previous, len(text))
    return spans


# Files another program parses (dbt's profiles.yml, dbt_project.yml, schema YAMLs): generated ones can be
# large, and that program's rules (duplicate keys, many anchors) stay its own. Only what would hang it or
# exhaust its memory is refused: aliases may add at most this many values beyond those written.
MAX_FOREIGN_BYTES = 32 * 2**20
MAX_ALIAS_VALUES = 200_000
_CHECKED: dict[tuple[str, int, int], None] = {}  # (path, size, mtime_ns) of files found bounded, per process
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the parser dbt uses (libyaml when installed)


def check_bounded(path: Path) -> None:
    """Refuse, with one located ConfigError, a YAML file another program will parse if parsing it could
    hang or exhaust memory: larger than MAX_FOREIGN_BYTES, not UTF-8, nested deeper than MAX_DEPTH, or
    aliases expanding to more than MAX_ALIAS_VALUES values (an alias bomb). Syntax errors are reported too.

    Reads the parser's events only (no document is built, so a bomb costs what its text costs); what the
    other program accepts (duplicate keys, Jinja in values) is left to it. A missing file is not checked.
    """
    try:
        stat = path.stat()
    except OSError:
        return
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _CHECKED:
        return
    text = _read_text(path, MAX_FOREIGN_BYTES, "a YAML file dbt reads", "Split it into smaller files.")
    _check_events(text, display_path(path))
    _CHECKED[key] = None


def read_text(path: Path) -> str:
    """A configuration file's UTF-8 text, bounded as load_yaml bounds it (one located ConfigError otherwise)."""
    return _read_text(path, MAX_BYTES, "a configuration file", "Is it the right file?")


def _read_text(path: Path, limit: int, what: str, fix: str) -> str:
    """The file's UTF-8 text; one located ConfigError when it is larger than ``limit``, unreadable or not UTF-8."""
    shown = display_path(path)
    try:
        size = path.stat().st_size
        if size > limit:
            raise ConfigError(f"{shown}: {size / 2**20:.1f} MB is more than {what} may hold ({limit >> 20} MB). {fix}")
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read file ({exc.strerror or exc})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(located(shown, line, "not UTF-8 text (binary bytes?). Save the file as UTF-8.")) from None


def _check_events(text: str, shown: str) -> None:
    sizes: dict[str, int] = {}  # anchor -> values its node expands to
    stack: list[list[Any]] = []  # open collections: [anchor, values so far]
    added = 0  # values the aliases add beyond those written
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.CollectionStartEvent):
                stack.append([event.anchor, 1])
                if len(stack) > MAX_DEPTH:
                    raise _Limit(_line(event.start_mark), f"nested more than {MAX_DEPTH} levels deep")
                continue
            if isinstance(event, yaml.CollectionEndEvent):
                anchor, size = stack.pop()
            elif isinstance(event, yaml.AliasEvent):
                anchor, size = None, sizes.get(event.anchor or "", 1)
                added += size - 1
                if added > MAX_ALIAS_VALUES:
                    raise _Limit(
                        _line(event.start_mark), f"aliases (*name) expand to more than {MAX_ALIAS_VALUES:,} values"
                    )
            elif isinstance(event, yaml.ScalarEvent):
                anchor, size = event.anchor, 1
            else:
                continue
            if anchor:
                sizes[anchor] = size
            if stack:
                stack[-1][1] += size
    except _Limit as exc:
        message = f"{exc.message}: more than any dbt file needs (such a file can hang or crash dbt). Simplify it."
        raise ConfigError(located(shown, exc.line, message)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(
            located(
                shown,
                mark.line + 1 if mark else None,
                f"malformed YAML: {problem}. Fix the syntax and run again.",
                mark.column + 1 if mark else None,
            )
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{shown}: not a YAML text file ({str(exc).splitlines()[0]}). Fix it.") from None


def _build(loader: yaml.SafeLoader, node: yaml.Node, loc: Loc, doc: YamlDoc, count: list[int]) -> Any:
    count[0] += 1
    if count[0] > MAX_VALUES:  # aliases re-used inside aliases expand exponentially
        raise _Limit(node.start_mark.line + 1, f"expands to more than {MAX_VALUES:,} values (aliases)")
    if len(loc) > MAX_DEPTH:
        raise _Limit(node.start_mark.line + 1, f"nested more than {MAX_DEPTH} levels deep")
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                line = key_node.start_mark.line + 1
                raise ConfigError(located(doc.display, line, "a key must be a plain value, not a list or map."))
            key = loader.construct_object(key_node, deep=True)
            if key in out:
                first = doc.lines.get(loc + (key,))
                raise ConfigError(
                    located(
                        doc.display,
                        key_node.start_mark.line + 1,
                        f"duplicate key '{key}' (first written on line {first}). Keep one of them.",
                    )
                )
            doc.lines[loc + (key,)] = key_node.start_mark.line + 1
            out[key] = _build(loader, value_node, loc + (key,), doc, count)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            doc.lines[loc + (index,)] = item.start_mark.line + 1
            items.append(_build(loader, item, loc + (index,), doc, count))
        return items
    return loader.construct_object(node, deep=True)
