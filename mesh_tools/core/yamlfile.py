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

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:  # type: ignore[override]
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
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
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
        try:
            size = path.stat().st_size
            if size > MAX_BYTES:
                raise ConfigError(
                    f"{display_path(path)}: {size / 2**20:.1f} MB is more than a configuration file may hold "
                    f"({MAX_BYTES // 2**20} MB). Is it the right file?"
                )
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{display_path(path)}: cannot read file ({exc.strerror or exc})") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ConfigError(
                located(display_path(path), line, "not UTF-8 text (binary bytes?). Save the file as UTF-8.")
            ) from None
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
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(
            located(doc.display, line, f"malformed YAML: {problem}. Fix the syntax and run again.", col)
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{doc.display}: malformed YAML: {exc}") from None
    finally:
        loader.dispose()
    return doc


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
