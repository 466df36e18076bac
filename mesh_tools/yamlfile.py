"""Load YAML files while remembering where each value was written, for located errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mesh_tools.errors import ConfigError, located

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
_START_DIR = Path.cwd().resolve()


def display_path(path: Path) -> str:
    """A path relative to the folder the command started in when it is below it, else absolute."""
    try:
        return str(path.resolve().relative_to(_START_DIR))
    except ValueError:
        return str(path)


def load_yaml(path: Path, *, required: bool = True, text: str | None = None) -> YamlDoc | None:
    """Parse ``path`` (or ``text``, read from it); malformed YAML and duplicate keys become one located ConfigError."""
    if text is None:
        if not path.is_file():
            if required:
                raise ConfigError(f"{display_path(path)}: file not found")
            return None
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{display_path(path)}: cannot read file ({exc})") from None
    doc = YamlDoc(path=path, data=None)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            doc.lines[()] = node.start_mark.line + 1
            doc.data = _build(loader, node, (), doc)
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


def _build(loader: yaml.SafeLoader, node: yaml.Node, loc: Loc, doc: YamlDoc) -> Any:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
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
            out[key] = _build(loader, value_node, loc + (key,), doc)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            doc.lines[loc + (index,)] = item.start_mark.line + 1
            items.append(_build(loader, item, loc + (index,), doc))
        return items
    return loader.construct_object(node, deep=True)
