"""The schema of mesh.yml and its loader, which turns validation errors into located messages.

Precedence, lowest first: built-in defaults < mesh.yml ``defaults`` < command-line flags.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mesh_tools.core.channels import check_channel
from mesh_tools.core.errors import ConfigError
from mesh_tools.core.paths import safe_release_id
from mesh_tools.core.suggestions import did_you_mean
from mesh_tools.core.yamlfile import YamlDoc, load_yaml

MESH_FILE = "mesh.yml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Owner(_Strict):
    """Who answers for a domain."""

    name: str | None = Field(default=None, description="Team or person name.")
    email: str | None = Field(default=None, description="Contact address.")

    def label(self) -> str:
        if self.name and self.email:
            return f"{self.name} <{self.email}>"
        return self.name or self.email or ""


class DomainConfig(_Strict):
    """One domain of the mesh: a dbt project folder and who owns it."""

    path: str = Field(description="Folder of the domain's dbt project, relative to the mesh root.")
    owner: Owner | None = Field(default=None, description="The owning team.")
    description: str | None = Field(default=None, description="What the domain is about.")


class Defaults(_Strict):
    """Mesh-wide defaults that command-line flags override."""

    target: str | None = Field(default=None, description="dbt target used for every domain (default: each profile's).")
    jobs: int | None = Field(
        default=None, ge=1, description="Domains built at once, one process each (default: the cores, at most 4)."
    )


class ExchangeConfig(_Strict):
    """Where releases of data products are published, and how many are kept."""

    path: str = Field(
        default="exchange",
        description="Folder of the exchange, relative to the mesh root, or absolute (a shared folder).",
    )
    url: str | None = Field(
        default=None,
        description="s3://bucket/prefix: the exchange is in an S3-compatible object store (credentials, endpoint "
        "and region from the standard AWS settings); `path` is then unused. MESH_EXCHANGE_URL overrides it.",
    )
    cache: str = Field(
        default=".mesh/exchange-cache",
        description="With `url`: where releases read from the store are kept, verified by hash, relative to the root.",
    )
    retention: int = Field(default=5, ge=1, description="Releases kept per product (pinned ones are never deleted).")


class HealthConfig(_Strict):
    """Where the health history and report live, and how the monitors judge (mesh.yml ``health:``)."""

    path: str = Field(
        default="health",
        description="Folder of history.duckdb and report.html/.json/.md, relative to the root (`~` is the home "
        "folder); never the root, a domain, the exchange or the docs site (nor inside or around them).",
    )
    fail_on: Literal["warn", "stale", "error", "never", "warning", "failing"] = Field(
        default="failing",
        description="`mesh health` exits 1 when a product or a domain is at least this bad: `warn`, `stale`, "
        "`error` or `never`, the words of `mesh health --fail-on` (the report's words `warning` and `failing` are "
        "accepted too).",
    )
    source_freshness: bool = Field(default=True, description="Run `dbt source freshness` before each domain's build.")
    volume_tolerance: float = Field(
        default=0.2, ge=0, description="Least relative deviation from the median row count that counts as an anomaly."
    )
    volume_window: int = Field(default=10, ge=1, description="Earlier measurements the expected row count uses.")
    volume_min_history: int = Field(default=3, ge=1, description="Earlier measurements needed before judging volume.")
    failure_streak: int = Field(default=3, ge=1, description="Consecutive failing runs reported as a streak.")
    schema_change_hours: float = Field(default=24, ge=0, description="How long a schema change stays a warning.")
    slo_window_days: int = Field(default=30, ge=1, description="Window of the SLO compliance figure.")
    history_days: int = Field(default=90, ge=1, description="Rows older than this are pruned from the history.")

    @field_validator("fail_on", mode="after")
    @classmethod
    def _dbt_words(cls, value: str) -> str:
        """`--fail-on`'s words (dbt's: warn, error) mean the report's statuses (warning, failing) here too."""
        return {"warn": "warning", "error": "failing"}.get(value, value)


class SelfServiceConfig(_Strict):
    """How `mesh new-domain` creates domains and `mesh upgrade-domain` maintains them (``self_service:``)."""

    template: str | None = Field(
        default=None, description="Folder of the mesh's domain template (default: the built-in template)."
    )
    projects_dir: str = Field(default="projects", description="Where new domains are created, relative to the root.")


class DocsConfig(_Strict):
    """The static documentation site (mesh.yml ``docs:``)."""

    path: str = Field(default="site", description="Folder the site is written to, relative to the root.")


SeverityName = Literal["off", "info", "warn", "error"]


class RuleSetting(_Strict):
    """A rule's severity and options."""

    severity: SeverityName | None = Field(default=None, description="off (mesh.yml only), info, warn or error.")
    options: dict[str, Any] = Field(default_factory=dict, description="Rule options (see `mesh rules`).")


def _settings(value: Any) -> Any:
    """``GOV101: warn`` is short for ``GOV101: {severity: warn}``.

    YAML 1.1 reads an unquoted ``off`` (as in ``GOV106: off``, what the docs show) as false: it means "off".
    """

    def short(v: Any) -> Any:
        if v is False:
            return {"severity": "off"}
        return {"severity": v} if isinstance(v, str) else v

    if isinstance(value, dict):
        return {k: short(v) for k, v in value.items()}
    return value


class GovernanceConfig(_Strict):
    """Global governance: the floor every domain stands on (mesh.yml ``governance:``).

    Findings are advisory unless the mesh opts in with ``enforce: true``: dbt itself lets a
    public model go without a contract, a description or an owner, so a mesh adopted as it is
    builds and publishes, and `mesh build` says how many findings there are. With ``enforce``,
    an error-level finding blocks the domain's releases (the recommended floor, `mesh init`).
    """

    enforce: bool = Field(
        default=False, description="Error-level findings block publishing (false: findings are only shown)."
    )
    fail_on: Literal["info", "warn", "error"] = Field(default="error", description="Lowest severity that fails.")
    rules: dict[str, RuleSetting] = Field(default_factory=dict, description="Rule code -> severity or setting.")
    plugins: list[str] = Field(default_factory=list, description="Modules (or .py files) of company rules.")

    _short_rules = field_validator("rules", mode="before")(_settings)


class Waiver(_Strict):
    """A domain's exception to a rule, for named models, with a reason and an expiry date."""

    rule: str = Field(description="The code of the rule waived (GOV202, or a plugin's).")
    models: list[str] = Field(
        min_length=1,
        description="The models it is waived for: a name (every version) or name.vN; a source by its source name.",
    )
    reason: str | None = Field(default=None, description="Why the rule does not apply (without one: GOV001).")
    expires: date | None = Field(
        default=None, description="The last day the waiver holds, YYYY-MM-DD (past it, or without one: GOV002)."
    )


class DomainGovernance(_Strict):
    """A domain's own governance: stricter severities, its own rules, waivers."""

    rules: dict[str, RuleSetting] = Field(
        default_factory=dict,
        description="Rule code -> severity or setting; only stricter than mesh.yml's (lowering one is refused).",
    )
    plugins: list[str] = Field(
        default_factory=list,
        description="Modules (or .py files, relative to the domain's folder) of rules that judge this domain only.",
    )
    waivers: list[Waiver] = Field(default_factory=list, description="Exceptions to rules for named models.")

    _short_rules = field_validator("rules", mode="before")(_settings)


class EnvironmentSettings(_Strict):
    """How a domain reads its upstreams when it builds in one environment (``mesh build --env NAME``)."""

    channels: dict[str, str | list[str]] = Field(
        default_factory=dict,
        description="Upstream ('project', 'project.model' or 'project.model.vN') -> the channel(s) read, first "
        "found wins (default: this environment's channel, then prod).",
    )
    pins: dict[str, str] = Field(default_factory=dict, description="Pins that apply in this environment only.")


class DomainFile(_Strict):
    """A domain's own mesh settings: ``mesh_domain.yml`` in its project folder."""

    governance: DomainGovernance = Field(
        default_factory=DomainGovernance,
        description="The domain's own governance: stricter severities, its own rules, waivers.",
    )
    pins: dict[str, str] = Field(
        default_factory=dict,
        description="Upstream product ('project.model' or 'project.model.vN') -> the release id to read.",
    )
    environments: dict[str, EnvironmentSettings] = Field(
        default_factory=dict, description="Environment name -> the channels and pins it reads upstreams from."
    )


class MeshConfig(_Strict):
    """The root of mesh.yml."""

    name: str = Field(description="Name of the mesh.")
    description: str | None = Field(default=None, description="What the mesh is about (shown in the docs site).")
    domains: dict[str, DomainConfig] | None = Field(
        default=None,
        description="Domains by name (each name equals the project's name in dbt_project.yml); when absent, every "
        "dbt project below the root is one.",
    )
    exclude: list[str] = Field(default_factory=list, description="Folders (relative to the root) that discovery skips.")
    defaults: Defaults = Field(default_factory=Defaults, description="Defaults that command-line flags override.")
    exchange: ExchangeConfig = Field(
        default_factory=ExchangeConfig, description="Where releases of data products are published."
    )
    governance: GovernanceConfig = Field(
        default_factory=GovernanceConfig, description="The governance floor every domain stands on."
    )
    health: HealthConfig = Field(
        default_factory=HealthConfig, description="The health history and report, and how the monitors judge."
    )
    docs: DocsConfig = Field(default_factory=DocsConfig, description="The static documentation site (`mesh docs`).")
    self_service: SelfServiceConfig = Field(
        default_factory=SelfServiceConfig,
        description="How `mesh new-domain` creates domains and `mesh upgrade-domain` maintains them.",
    )


DOMAIN_FILE = "mesh_domain.yml"


def load_domain_file(folder: Path) -> DomainFile:
    """A domain's ``mesh_domain.yml``, or the defaults when it has none."""
    doc = load_yaml(folder / DOMAIN_FILE, required=False)
    if doc is None or doc.data is None:
        return DomainFile()
    if not isinstance(doc.data, dict):
        raise doc.error((), f"{DOMAIN_FILE} must be a mapping (for example 'pins:').")
    try:
        settings = DomainFile.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, doc, DomainFile)) from None
    for product, release in settings.pins.items():  # a pin becomes a path: only a release id is one
        safe_release_id(release, f"{doc.display}:{doc.line_of(('pins', product))}: the pin of {product[:80]}")
    for env, setting in settings.environments.items():  # an environment and a channel become file names
        check_channel(env, f"{doc.display}:{doc.line_of(('environments', env))}")
        for product, release in setting.pins.items():
            where = f"{doc.display}:{doc.line_of(('environments', env, 'pins', product))}: the pin of {product[:80]}"
            safe_release_id(release, where)
        for upstream, channels in setting.channels.items():
            where = f"{doc.display}:{doc.line_of(('environments', env, 'channels', upstream))}"
            for channel in [channels] if isinstance(channels, str) else channels:
                check_channel(channel, where)
    return settings


def load_mesh_config(path: Path) -> tuple[MeshConfig, YamlDoc]:
    """Read and validate mesh.yml; every problem becomes one located ConfigError."""
    doc = load_yaml(path)
    assert doc is not None
    if not isinstance(doc.data, dict):
        raise doc.error(
            (), "mesh.yml must be a mapping with at least 'name:'. See mesh-tools' docs/reference/configuration.md."
        )
    try:
        return MeshConfig.model_validate(doc.data), doc
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, doc, MeshConfig)) from None


MAX_REPORTED = 10  # problems listed one by one; the rest are counted


def format_validation_error(exc: ValidationError, doc: YamlDoc, model: type[BaseModel]) -> str:
    """Numbered, located messages with close-match hints for unknown keys (the first few, then a count)."""
    errors = exc.errors()
    lines = []
    known_at: dict[tuple[Any, ...], list[str]] = {}
    for number, err in enumerate(errors[:MAX_REPORTED], start=1):
        loc = tuple(err["loc"])
        where = f"{doc.display}:{doc.line_of(loc)}"
        dotted = ".".join(str(part) for part in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            parent = loc[:-1]
            if parent not in known_at:
                known_at[parent] = _fields_at(model, parent)
            known = known_at[parent]
            msg = f"unknown key '{str(loc[-1])[:80]}' at {dotted[:200]}.{did_you_mean(str(loc[-1])[:80], known)}"
            if known:
                msg += f" Allowed keys: {', '.join(sorted(known))}."
        elif err["type"] == "missing":
            msg = f"missing required key '{dotted}'."
        else:
            msg = f"{dotted}: {err['msg']} (got {_short(err.get('input'))})."
        lines.append(f"{where}: {msg}" if len(errors) == 1 else f"({number}) {where}: {msg}")
    if len(errors) > MAX_REPORTED:
        lines.append(f"... and {len(errors) - MAX_REPORTED} more problems in {doc.display}.")
    return "\n".join(lines)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (nested) model that ``loc`` points into."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            continue  # a key of a dict (domains.<name>): _model_of already chose its value type
        current = _model_of(field.annotation)
    return list(getattr(current, "model_fields", {}).keys()) if current else []


def _model_of(annotation: Any) -> Any:
    """The pydantic model inside an annotation such as ``dict[str, X] | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def env_seconds(name: str, default: float) -> float:
    """A duration in seconds from the environment variable ``name``: ``default`` when unset, not a number,
    or not positive."""
    import os

    try:
        value = float(os.environ.get(name) or default)
    except ValueError:
        return default
    return value if value > 0 else default
