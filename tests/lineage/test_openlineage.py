"""OpenLineage run events from real builds: file transport validated against the event schema, the
cross-project edge through the release dataset, and a lineage server that fails never failing a build."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
import pytest

from tests.helpers import copy_fixture, mesh_env, run_command

SCHEMA = json.loads((Path(__file__).with_name("openlineage_event.schema.json")).read_text())


def lineage_env(**transport: str) -> dict[str, str]:
    env = {k: v for k, v in mesh_env().items() if not k.startswith("OPENLINEAGE")}
    env.update({f"OPENLINEAGE__TRANSPORT__{k.upper()}": v for k, v in transport.items()})
    return env


@pytest.fixture(scope="module")
def lineage_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict], str]:
    """plain_mesh built with a file transport: every event, one JSON object per line."""
    base = tmp_path_factory.mktemp("lineage")
    root = copy_fixture("plain_mesh", base)
    events = base / "events.ndjson"
    result = run_command(["mesh", "build"], root, lineage_env(type="file", log_file_path=str(events), append="true"))
    assert result.returncode == 0, result.stdout + result.stderr
    return root, [json.loads(line) for line in events.read_text().splitlines()], result.stdout + result.stderr


def test_every_event_is_an_openlineage_run_event(lineage_build: tuple[Path, list[dict], str]) -> None:
    root, events, output = lineage_build
    assert "warning: OpenLineage" not in output
    validator = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    for event in events:
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(event)]
        assert not errors, (event["job"]["name"], errors)
    # every run starts, then completes or fails, once
    states: dict[str, list[str]] = {}
    for event in events:
        states.setdefault(event["run"]["runId"], []).append(event["eventType"])
    assert states and all(s in (["START", "COMPLETE"], ["START", "FAIL"]) for s in states.values()), states
    jobs = {e["job"]["name"] for e in events}
    assert {"shop.build", "shop.orders.v2", "shop.publish", "reporting.build", "reporting.order_summary"} <= jobs
    # a model's run is a child of its domain's run, and its output carries the model's schema
    (done,) = [e for e in events if e["job"]["name"] == "shop.orders.v2" and e["eventType"] == "COMPLETE"]
    (build,) = [e for e in events if e["job"]["name"] == "shop.build" and e["eventType"] == "START"]
    assert done["run"]["facets"]["parent"]["run"]["runId"] == build["run"]["runId"]
    (table,) = done["outputs"]
    assert table["namespace"] == f"duckdb://{(root / 'shop' / 'shop.duckdb').resolve()}"
    fields = {f["name"]: f.get("type") for f in table["facets"]["schema"]["fields"]}
    assert fields == {"order_id": "integer", "customer_id": "integer", "status": "varchar", "amount": "decimal(10,2)"}


def test_the_release_dataset_joins_the_producers_publish_to_the_consumers_models(
    lineage_build: tuple[Path, list[dict], str],
) -> None:
    root, events, _ = lineage_build
    exchange = f"file://{(root / 'exchange').resolve()}"
    current = json.loads((root / "exchange/products/shop/orders/v2/current.json").read_text())["release_id"]
    # the producer's publish writes the release: dataset = exchange + product, version = release id
    (publish,) = [e for e in events if e["job"]["name"] == "shop.publish" and e["eventType"] == "COMPLETE"]
    (release,) = [o for o in publish["outputs"] if o["name"] == "shop.orders.v2"]
    assert release["namespace"] == exchange and release["facets"]["version"]["datasetVersion"] == current
    lineage = release["facets"]["columnLineage"]["fields"]
    assert lineage["order_id"]["inputFields"][0]["field"] == "order_id"
    assert lineage["order_id"]["inputFields"][0]["name"].endswith("orders_v2")
    assert lineage["customer_id"]["inputFields"][0]["transformations"][0]["masking"] is True  # PII, masked
    # the consumer reads that same dataset (same namespace, name and version), into the view its models read
    (consume,) = [e for e in events if e["job"]["name"] == "reporting.consume.shop.orders.v2"
                  and e["eventType"] == "COMPLETE"]  # fmt: skip
    (read,) = consume["inputs"]
    assert (read["namespace"], read["name"], read["facets"]["version"]["datasetVersion"]) == (
        exchange, "shop.orders.v2", current)  # fmt: skip
    (stub,) = consume["outputs"]
    (summary,) = [e for e in events if e["job"]["name"] == "reporting.order_summary" and e["eventType"] == "COMPLETE"]
    assert (stub["namespace"], stub["name"]) in {(i["namespace"], i["name"]) for i in summary["inputs"]}
    # so a lineage backend walks shop's table -> shop.publish -> release -> reporting's stub -> order_summary
    (done,) = [e for e in events if e["job"]["name"] == "shop.orders.v2" and e["eventType"] == "COMPLETE"]
    assert (done["outputs"][0]["namespace"], done["outputs"][0]["name"]) in {
        (i["namespace"], i["name"]) for i in publish["inputs"]}  # fmt: skip
    (consumer_build,) = [e for e in events if e["job"]["name"] == "reporting.build" and e["eventType"] == "COMPLETE"]
    assert {(i["name"], i["facets"]["version"]["datasetVersion"]) for i in consumer_build["inputs"]} >= {
        ("shop.orders.v2", current)}  # fmt: skip


class _Failing(BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - the handler's name
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        _Failing.requests.append(self.path)
        self.send_response(500)
        self.end_headers()
        self.wfile.write(b"lineage backend down")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def failing_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_a_lineage_server_answering_500_never_fails_the_build(tmp_path: Path, failing_server: str) -> None:
    root = copy_fixture("plain_mesh", tmp_path)
    _Failing.requests.clear()
    env = lineage_env(type="http", url=failing_server, retry=json.dumps({"total": 1, "backoff_factor": 0.1}))
    result = run_command(["mesh", "build", "shop"], root, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mesh build: 1 of 1 domains succeeded" in result.stdout
    assert "warning: OpenLineage events not delivered" in result.stderr and "the rest dropped" in result.stderr
    assert "Traceback" not in result.stderr
    assert _Failing.requests and all(p == "/api/v1/lineage" for p in _Failing.requests)
    assert (root / "exchange/products/shop/orders/v2/current.json").is_file()  # published all the same
    # and with no lineage configuration, no request at all
    _Failing.requests.clear()
    quiet = run_command(["mesh", "publish", "shop"], root, lineage_env())
    assert quiet.returncode == 0 and not _Failing.requests and "OpenLineage" not in quiet.stderr


def test_a_lineage_server_that_never_answers_costs_the_build_its_budget_once(tmp_path: Path) -> None:
    import socket

    root = copy_fixture("plain_mesh", tmp_path)
    listener = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel's backlog), never answers
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        env = {**lineage_env(type="http", url=url), "MESH_LINEAGE_TIMEOUT": "2"}
        result = run_command(["mesh", "build", "shop"], root, env, timeout=300)
    finally:
        listener.close()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning: OpenLineage events not delivered (the lineage backend took more than 2 s in all" in result.stderr
    assert "Traceback" not in result.stderr
