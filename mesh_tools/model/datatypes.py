"""A contract's column types and names as another domain may declare them: a type is a type, never SQL.

dbt checks an enforced contract by running ``cast(null as <data_type>) as <name>`` on the connection of
the project that declares it, and for a stub model that is the *consumer's* connection. So a producer's
``data_type`` must be nothing but a type, and a column name that is not a plain identifier must be
quoted (dbt's ``adapter.quote`` does not escape: a name holding the quote character cannot be quoted).

The check is a strict grammar, one for every engine (DuckDB, PostgreSQL, Spark spell types alike):
words, dotted names, numbers, string literals (enum values) and quoted field names, in balanced
``(...)``, ``<...>`` and ``[...]`` groups. Nothing else is a token: no ``;``, no comment, no operator,
no backslash, no unbalanced bracket, so a type cannot end the ``cast`` it is put in, nor begin a
statement. Whether the engine knows the type is left to the engine (a type it does not know fails
the contract check as dbt reports it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

TYPE_LIMIT = 32 * 1024  # characters of one data type (a wide struct): refused beyond
DEPTH_LIMIT = 32  # levels of nesting of a type

_TOKEN = re.compile(
    r"(?P<space>[ \t\r\n]+)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<number>[0-9]+)"
    r"|(?P<string>'(?:[^'\\\x00-\x1f\x7f]|'')*')"
    r'|(?P<quoted>"(?:[^"\\\x00-\x1f\x7f]|"")+"|`[^`\\\x00-\x1f\x7f]+`)'
    r"|(?P<punct>[()<>\[\],.:])"
)
_CLOSE = {"(": ")", "<": ">"}
PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # a column name any engine reads unquoted, as itself
_UNQUOTABLE = re.compile(r'["`\x00-\x1f\x7f]')  # what no quoting by dbt (``adapter.quote``) can hold


class NotAType(ValueError):
    """A declared data type that is not a type (the message says what is wrong, and where)."""


def _tokens(text: str) -> tuple[list[tuple[str, str, int]], NotAType | None]:
    """The tokens of ``text`` up to the first character no token holds, and the error naming it (or None)."""
    tokens: list[tuple[str, str, int]] = []
    at = 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None:
            return tokens, NotAType(f"{text[at]!r} at character {at + 1} cannot be part of a type")
        if match.lastgroup != "space":
            tokens.append((match.lastgroup or "", match.group(), at))
        at = match.end()
    return tokens, None


class _Parser:
    """type := name {name | args | '[' [number] ']'} ; args := '(' arg {',' arg} ')' | '<' arg {',' arg} '>' ;
    arg := number | string | [field [':']] type ; name := (word | quoted) {'.' (word | quoted)}."""

    def __init__(self, text: str):
        self.tokens, self.bad = _tokens(text)
        self.at = 0

    def peek(self, offset: int = 0) -> tuple[str, str, int] | None:
        index = self.at + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def fail(self, expected: str) -> NotAType:
        token = self.peek()
        if token is None:  # the tokens end: at a character no token holds, if that is why
            return self.bad or NotAType(f"it ends where {expected} was expected")
        return NotAType(f"{token[1]!r} at character {token[2] + 1} where {expected} was expected")

    def take(self, kind: str, value: str | None = None) -> bool:
        token = self.peek()
        if token is not None and token[0] == kind and (value is None or token[1] == value):
            self.at += 1
            return True
        return False

    def name(self) -> None:
        if not (self.take("word") or self.take("quoted")):
            raise self.fail("a type name")
        while self.take("punct", "."):
            if not (self.take("word") or self.take("quoted")):
                raise self.fail("a name after '.'")

    def type(self, depth: int) -> None:
        if depth > DEPTH_LIMIT:
            raise NotAType(f"it is nested deeper than {DEPTH_LIMIT} levels")
        self.name()
        while True:
            token = self.peek()
            if token is None:
                return
            kind, value, _ = token
            if kind in ("word", "quoted"):  # double precision, time with time zone, "char"
                self.name()
            elif value in _CLOSE:
                self.at += 1
                self.args(_CLOSE[value], depth + 1)
            elif value == "[":
                self.at += 1
                self.take("number")
                if not self.take("punct", "]"):
                    raise self.fail("']'")
            else:
                return

    def args(self, close: str, depth: int) -> None:
        while True:
            self.arg(depth)
            if self.take("punct", close):
                return
            if not self.take("punct", ","):
                raise self.fail(f"',' or {close!r}")

    def arg(self, depth: int) -> None:
        if self.take("number") or self.take("string"):
            return
        following = self.peek(1)
        if following is not None and following[1] == ":":  # a Spark field, struct<name:type>
            if not (self.take("word") or self.take("quoted")):
                raise self.fail("a field name")
            self.at += 1
        elif self.take("quoted"):  # a quoted field name, struct("my field" integer)
            pass
        self.type(depth)


def checked_type(value: Any) -> str:
    """``value`` as the type a contract may declare to another domain (stripped); NotAType otherwise."""
    if not isinstance(value, str):
        raise NotAType(f"a type is text, not {type(value).__name__}")
    text = value.strip()
    if not text:
        raise NotAType("it is empty")
    if len(text) > TYPE_LIMIT:
        raise NotAType(f"it is {len(text):,} characters long, over the limit of {TYPE_LIMIT:,}")
    parser = _Parser(text)
    parser.type(0)
    if parser.peek() is not None:
        raise parser.fail("the end of the type")
    if parser.bad is not None:
        raise parser.bad
    return text


def column_quote(name: Any, quote: Any) -> bool | None:
    """The ``quote`` a column must carry across the boundary: a plain identifier keeps the producer's
    setting, any other name is quoted; ValueError for a name no quoting can hold."""
    if not isinstance(name, str) or not name:
        raise ValueError("a column name must be non-empty text")
    if PLAIN.fullmatch(name):
        return None if quote is None else bool(quote)
    if _UNQUOTABLE.search(name) or len(name) > 1024:
        raise ValueError(
            "it cannot be quoted safely (it holds a double quote, a backtick or a control character, or is over "
            "1,024 characters)"
        )
    return True


def shown(value: Any, limit: int = 120) -> str:
    """A value of another domain's, short enough for one message line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…'"


def contract_problems(columns: Any, enforced: bool = True) -> list[str]:
    """One sentence per column (a manifest node's ``columns`` mapping) whose name cannot be quoted or, in an
    ``enforced`` contract, whose data type is not a type: "column 'x': data_type '...' is not a data type (why)".

    An unenforced contract's types are documentation (a consumer's stub leaves out what is not a type)."""
    problems = []
    for key, column in columns.items() if isinstance(columns, Mapping) else []:
        if not isinstance(column, Mapping):
            continue
        name = column.get("name") or key
        try:
            column_quote(name, column.get("quote"))
        except ValueError as exc:
            problems.append(f"column name {shown(name)}: {exc}")
            continue
        if not enforced or not column.get("data_type"):
            continue
        try:
            checked_type(column["data_type"])
        except NotAType as exc:
            problems.append(f"column {shown(name)}: data_type {shown(column['data_type'])} is not a data type ({exc})")
    return problems


def is_type(value: Any) -> bool:
    try:
        checked_type(value)
    except NotAType:
        return False
    return True
