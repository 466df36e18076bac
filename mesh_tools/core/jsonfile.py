"""Read JSON the mesh did not write itself: an artifact's text with a size cap, and any text with a depth bound.

dbt-loom manifests may be ``.json.gz`` files another team hands over: 3 MB of gzip can hold gigabytes
of JSON. The text is decompressed in blocks and refused once it passes the cap, so reading one costs at
most the cap, never the machine's memory. The cap (512 MB, far above the manifest of any real project)
can be raised with ``MESH_MAX_ARTIFACT_MB`` for a truly huge one.

Valid JSON can also be nested deeper than Python's decoder recurses (``[`` a hundred thousand times):
``loads`` turns that RecursionError into a ValueError, so every reader treats such a file as the corrupt
file it is (its own located error, or its documented fallback), never as a crash.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

DEFAULT_MAX_MB = 512
_BLOCK = 2**20


class TooLarge(ValueError):
    """The artifact holds (or decompresses to) more text than the cap allows."""


class TooDeep(ValueError):
    """The JSON is nested deeper than it can be decoded: no file the mesh or dbt writes is."""


def loads(text: str | bytes | bytearray) -> Any:
    """``json.loads`` for the content of a file: ValueError (never RecursionError) for any text that is not
    JSON the mesh can hold, nesting too deep included."""
    try:
        return json.loads(text)
    except RecursionError:
        raise TooDeep("it is nested deeper than any file the mesh or dbt writes") from None


def max_artifact_bytes() -> int:
    """The cap: ``MESH_MAX_ARTIFACT_MB`` when it is a positive number, else DEFAULT_MAX_MB (in bytes)."""
    try:
        value = float(os.environ.get("MESH_MAX_ARTIFACT_MB") or DEFAULT_MAX_MB)
    except ValueError:
        value = DEFAULT_MAX_MB
    return int((value if value > 0 else DEFAULT_MAX_MB) * 2**20)


def read_artifact_text(path: Path) -> str:
    """The file's text as UTF-8, decompressed when its name ends in ``.gz``.

    Raises TooLarge past the cap; OSError, EOFError (a truncated gzip) and UnicodeDecodeError as reading does.
    """
    limit = max_artifact_bytes()
    if path.suffix != ".gz":
        size = path.stat().st_size
        if size > limit:
            raise TooLarge(f"is {size / 2**20:,.0f} MB, more than the {_shown(limit)} an artifact may hold{_RAISE}")
        return path.read_text(encoding="utf-8")
    text = bytearray()
    with gzip.open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            text += block
            if len(text) > limit:
                raise TooLarge(f"decompresses to more than {_shown(limit)}: a compression bomb?{_RAISE}")
    return text.decode("utf-8")


_RAISE = " (if the file is a real one, raise the cap with MESH_MAX_ARTIFACT_MB)"


def _shown(limit: int) -> str:
    return f"{limit / 2**20:,.0f} MB"
