"""Credentials kept out of everything the mesh writes: a URL reduced to its place, URLs in a message masked.

A URL the mesh writes down (an ODCS contract's ``endpointUrl``, an OpenLineage namespace) names where
something is, never who reads it: ``http://user:secret@host:9000/?X-Amz-Security-Token=...`` is written as
``http://host:9000/``. In a message, every URL keeps its shape with the user part and query values as
``***``, so the reader still sees which URL was meant.
"""

from __future__ import annotations

import re

# scheme://, then everything up to the query or fragment (a password may hold an unescaped '/')
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^?#]*)", re.S)
# in free text: scheme:// and a user part up to the last '@' of the same word
_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^\s'\"<>@]*(?:@[^\s'\"<>@]*)*@")
_QUERY_VALUE = re.compile(r"([?&][^=&\s'\"<>]+=)[^&\s'\"<>]+")


def url_place(url: str) -> str:
    """``url`` without its user, password, query and fragment: scheme, host, port and path only.

    >>> url_place("http://alice:s3cret@minio:9000/?X-Amz-Security-Token=t")
    'http://minio:9000/'
    >>> url_place("s3://bucket/prefix")
    's3://bucket/prefix'
    """
    match = _URL.match(url.strip())
    if match is None:  # not a URL that can be taken apart: masked as text would be
        return redact_urls(url)
    scheme, rest = match.groups()
    authority, slash, path = rest.partition("/")
    if "@" in path and "@" not in authority:  # 'user:pa/ss@host': the '/' belongs to the password
        authority, slash, path = rest.rpartition("@")[2].partition("/")
    return scheme + authority.rpartition("@")[2] + slash + path


def redact_urls(text: str) -> str:
    """``text`` with the user part of every URL and every query value masked as ``***``.

    >>> redact_urls("cannot reach http://alice:s3cret@minio:9000/x?token=abc&v=1")
    'cannot reach http://***@minio:9000/x?token=***&v=***'
    """
    text = _USERINFO.sub(r"\1***@", text)
    return _QUERY_VALUE.sub(r"\1***", text)
