"""Text written into files dbt renders as Jinja, so that dbt shows it exactly as written and never runs it.

Another domain's metadata (descriptions, meta, tags, names ...) is data: in a stub package dbt would
render it, so ``{{ env_var('AWS_SECRET_ACCESS_KEY') }}`` in a producer's description would print the
consumer's secret into its manifest. Each Jinja opening delimiter (``{{``, ``{%``, ``{#``) is written as
an expression that prints it (``{{ '{{' }}``), so rendering gives back the text, byte for byte, whatever
it holds (``{% raw %}`` would not: it ends at the first ``endraw`` of the text).

What dbt 1.11 renders, found by experiment (tests/stitch/test_metadata_is_data.py keeps it true): when it
reads a schema file, every string value as a native template, except where dbt's own schema renderer
says not to (descriptions, and anything its rules reach by position, such as a meta key named
``description`` four levels down); later, every model's, version's and column's description as a plain
template with the ``doc()`` context (a version's own description is rendered both times). Dict keys are
never rendered, and neither is a group's description. Which values the schema renderer skips is asked of
dbt itself (``SchemaYamlRenderer.should_render_keypath``); if dbt cannot answer, every value is escaped
(shown with its escapes, never run).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

# an opening delimiter, a carriage return (Jinja would read it as a newline), and a '{' just before one (it
# would make '{{{' with the expression that prints the carriage return)
_ESCAPED = re.compile(r"\{[{%#]|\{(?=\r)|\r")
# the characters that make dbt pass a string to Jinja at all (dbt/clients/jinja.py ``_HAS_RENDER_CHARS_PAT``)
_RENDERED = re.compile(r"\{[{%#]|[#}%]\}")


def jinja_text(text: str) -> str:
    """``text`` as a piece of a Jinja template that renders to exactly ``text`` (SQL, a comment).

    Jinja reads every newline as ``\\n``: a carriage return is printed by an expression too.
    """
    return _ESCAPED.sub(lambda match: "{{ '" + match.group(0).replace("\r", "\\r") + "' }}", text)


def yaml_text(text: str, *, description: bool = False) -> str:
    """``text`` as the value of a YAML property in a package's schema file, so that dbt renders it to exactly
    ``text``.

    dbt renders a ``description`` only when it holds a delimiter (``{{``, ``}}`` ...), and every other value
    always (natively: Jinja then reads ``\\r`` as a newline and drops a last newline even in plain text), so
    a rendered value gets one more newline at its end to keep its own.
    """
    if description and not _RENDERED.search(text):
        return text
    escaped = jinja_text(text)
    return escaped + "\n" if escaped.endswith("\n") else escaped


def schema_entry(entry: dict[str, Any], key: str) -> dict[str, Any]:
    """An entry of a schema file's ``key`` list (a model of ``models``, a group of ``groups``) with every
    string value written so that dbt renders it to exactly what it is here."""

    def walk(value: Any, keypath: tuple[str | int, ...]) -> Any:
        if isinstance(value, str):
            text = yaml_text(value, description=True) if key == "models" and _node_description(keypath) else value
            return yaml_text(text) if _schema_renders(key, keypath) else text
        if isinstance(value, list):
            return [walk(item, (*keypath, index)) for index, item in enumerate(value)]
        if isinstance(value, dict):
            return {k: walk(item, (*keypath, str(k))) for k, item in value.items()}
        return value

    return walk(entry, ())


def _node_description(keypath: tuple[str | int, ...]) -> bool:
    """Whether a model entry's value at ``keypath`` becomes a node's or a column's description (rendered again
    with the ``doc()`` context): the model's, a version's, a column's, a version's column's."""
    if keypath == ("description",):
        return True
    if len(keypath) == 3 and keypath[0] in ("versions", "columns") and keypath[2] == "description":
        return True
    return len(keypath) == 5 and keypath[0] == "versions" and keypath[2] == "columns" and keypath[4] == "description"


@cache
def _schema_renderer(key: str) -> Any:
    from dbt.parser.schema_renderer import SchemaYamlRenderer  # dbt's own rules, not a copy of them

    return SchemaYamlRenderer({}, key)


def _schema_renders(key: str, keypath: tuple[str | int, ...]) -> bool:
    """Whether dbt renders the value at ``keypath`` of an entry of ``key`` when it reads the schema file (True
    when dbt cannot say: escaped text is safe, only less pretty)."""
    try:
        return bool(_schema_renderer(key).should_render_keypath(keypath))
    except Exception:  # noqa: BLE001 - another dbt: escape everything
        return True
