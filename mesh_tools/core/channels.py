"""Channel names: the one rule by which every place that names a channel (an environment) checks it.

A channel is read from ``--env``, ``MESH_ENV``, ``mesh promote --from/--to``, the ``environments:`` of a
domain's ``mesh_domain.yml`` (its names and the channels it reads) and the exchange's own keys; all of
them call ``check_channel``, so a name one of them refuses is refused by all (it lives in core because
the configuration loader, below the exchange, checks it too).
"""

from __future__ import annotations

from mesh_tools.core.errors import ConfigError
from mesh_tools.core.paths import safe_name

PROD = "prod"  # the channel every build reads and publishes unless told otherwise


def check_channel(value: object, where: str) -> str:
    """``value`` if it can name a channel, else a ConfigError naming ``where`` it came from.

    A channel becomes a file name in the exchange (``channels/<name>.json``), so it is a safe name (letters,
    digits, '_' and '-', no '.', '/' or line break); and prod is spelled one way only, since ``PROD`` would be
    a channel nobody reads (and prod's own file on a case-insensitive share)."""
    name = safe_name(value, "environment (channel)", where)
    if name != PROD and name.lower() == PROD:
        raise ConfigError(f"{where}: {name!r} cannot name an environment (channel); did you mean {PROD!r}?")
    return name
