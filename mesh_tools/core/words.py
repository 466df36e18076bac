"""Counted nouns in messages and reports: "1 domain", "2 domains", never "1 domains"."""

from __future__ import annotations


def noun(count: int, singular: str, plural: str | None = None) -> str:
    """The noun that goes with ``count``: ``singular`` for exactly one, else ``plural`` (default: an added "s")."""
    return singular if count == 1 else (plural or f"{singular}s")


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """``count`` and its noun: ``counted(1, "domain")`` is "1 domain", ``counted(3, "domain")`` "3 domains"."""
    return f"{count} {noun(count, singular, plural)}"
