"""Write a synthetic mesh of any size (N domains x M models, K cross-project refs), deterministic for a seed.

Used to measure how the mesh's commands grow with its size. Every domain is a real dbt-duckdb
project: a landing file of R rows read as a source, a staging model, a tree of intermediate
views, and public, contracted, tested data products; consumers ref earlier domains' products,
so the domain graph has no cycle.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from mesh_tools.core.errors import ConfigError
from mesh_tools.dbt import engines

COLUMNS = [("id", "bigint"), ("key", "varchar"), ("amount", "double"), ("ts", "timestamp")]


@dataclass(frozen=True)
class SyntheticSpec:
    domains: int = 5
    models: int = 20  # per domain, products included
    refs: int = 8  # cross-project refs in the whole mesh
    rows: int = 1000  # landing rows per domain
    seed: int = 1

    @property
    def products(self) -> int:
        return max(1, self.models // 50)


def domain_name(index: int) -> str:
    return f"domain_{index:03d}"


def plan_refs(spec: SyntheticSpec) -> dict[int, list[tuple[int, int]]]:
    """For each consumer domain, the (producer domain, product) pairs it refs."""
    rng = random.Random(spec.seed)
    refs: dict[int, list[tuple[int, int]]] = {}
    if spec.domains < 2:
        return refs
    pairs: set[tuple[int, int, int]] = set()
    attempts = 0
    while len(pairs) < spec.refs and attempts < spec.refs * 20:
        attempts += 1
        consumer = rng.randrange(1, spec.domains)
        producer = rng.randrange(0, consumer)
        pairs.add((consumer, producer, rng.randrange(spec.products)))
    for consumer, producer, product in sorted(pairs):
        refs.setdefault(consumer, []).append((producer, product))
    return refs


def _columns_yaml(tests: bool) -> list[dict]:
    out = []
    for name, data_type in COLUMNS:
        column: dict = {"name": name, "description": f"The {name} column.", "data_type": data_type}
        if name == "id":
            column["constraints"] = [{"type": "not_null"}]
            if tests:
                column["data_tests"] = ["unique", "not_null"]
        out.append(column)
    return out


def write_domain(root: Path, index: int, spec: SyntheticSpec, refs: list[tuple[int, int]]) -> None:
    name = domain_name(index)
    folder = root / "projects" / name
    models = folder / "models"
    models.mkdir(parents=True)
    (folder / "landing").mkdir()
    (folder / "dbt_project.yml").write_text(
        yaml.safe_dump(
            {
                "name": name,
                "profile": name,
                "version": "1.0.0",
                "config-version": 2,
                "models": {name: {"+materialized": "view", "+group": name}},
                "flags": {"send_anonymous_usage_stats": False},
            },
            sort_keys=False,
        )
    )
    (folder / "profiles.yml").write_text(
        yaml.safe_dump({name: {"target": "dev", "outputs": {"dev": engines.local_profile(f"{name}.duckdb")}}})
    )
    upstreams = sorted({domain_name(p) for p, _ in refs})
    (folder / "dependencies.yml").write_text(yaml.safe_dump({"projects": [{"name": u} for u in upstreams]}))
    select = "select id, key, amount, ts from "
    (models / "stg_events.sql").write_text(
        "select cast(id as bigint) as id, cast(key as varchar) as key, cast(amount as double) as amount,\n"
        "    cast(ts as timestamp) as ts\nfrom {{ source('raw', 'events') }}\n"
    )
    rng = random.Random(spec.seed * 1000 + index)
    available = ["stg_events"]
    n_intermediate = max(0, spec.models - 1 - spec.products)
    for ref_index, (producer, product) in enumerate(refs[:n_intermediate]):
        model = f"int_from_{domain_name(producer)}_{product}_{ref_index}"
        (models / f"{model}.sql").write_text(f"{select}{{{{ ref('{domain_name(producer)}', 'product_{product}') }}}}\n")
        available.append(model)
    for number in range(len(available) - 1, n_intermediate):
        model = f"int_{number:04d}"
        parent = available[rng.randrange(len(available))]
        (models / f"{model}.sql").write_text(f"{select}{{{{ ref('{parent}') }}}}\nwhere amount >= 0\n")
        available.append(model)
    product_models = []
    for product in range(spec.products):
        parent = available[-1 - (product % len(available))]
        (models / f"product_{product}.sql").write_text(f"{select}{{{{ ref('{parent}') }}}}\n")
        product_models.append(
            {
                "name": f"product_{product}",
                "description": f"Data product {product} of {name}.",
                "config": {"access": "public", "materialized": "table", "contract": {"enforced": True}},
                "columns": _columns_yaml(tests=True),
            }
        )
    properties = {
        "groups": [{"name": name, "owner": {"name": f"Team {index}", "email": f"team{index}@example.test"}}],
        "sources": [
            {
                "name": "raw",
                "config": {
                    "loaded_at_field": "ts",
                    "freshness": {"warn_after": {"count": 3650, "period": "day"}},
                    "meta": {"external_location": "read_parquet('landing/{name}.parquet')"},
                },
                "tables": [{"name": "events"}],
            }
        ],
        "models": [{"name": "stg_events", "columns": [{"name": "id", "data_tests": ["not_null"]}]}, *product_models],
    }
    (models / "_properties.yml").write_text(yaml.safe_dump(properties, sort_keys=False))
    con = engines.connect_local()  # the landing data is generated by DuckDB SQL
    try:
        target = str(folder / "landing" / "events.parquet").replace("'", "''")
        con.execute(
            f"copy (select i::bigint as id, 'k' || (hash(i + {spec.seed}) % 97)::varchar as key, "
            f"((hash(i * 31 + {spec.seed}) % 10000) / 100.0)::double as amount, "
            f"timestamp '2025-01-01' + to_seconds((hash(i) % 31536000)::bigint) as ts "
            f"from range({spec.rows}) t(i)) to '{target}' (format parquet)"
        )
    finally:
        con.close()


def generate_mesh(root: Path, spec: SyntheticSpec, *, force: bool = False) -> list[str]:
    """Write the synthetic mesh into ``root`` (which must be empty unless ``force``)."""
    if spec.domains < 1 or spec.models < 2:
        raise ConfigError("a synthetic mesh needs at least 1 domain and 2 models per domain.")
    if root.exists() and any(root.iterdir()):
        if not force:
            raise ConfigError(f"{root}: folder is not empty. Choose an empty folder or pass --force to replace it.")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    refs = plan_refs(spec)
    names = [domain_name(i) for i in range(spec.domains)]
    for index in range(spec.domains):
        write_domain(root, index, spec, refs.get(index, []))
    (root / "mesh.yml").write_text(
        yaml.safe_dump(
            {
                "name": f"synthetic-{spec.domains}x{spec.models}",
                "description": f"Synthetic mesh: {spec.domains} domains x {spec.models} models, seed {spec.seed}.",
                "domains": {n: {"path": f"projects/{n}"} for n in names},
            },
            sort_keys=False,
        )
    )
    return names
