"""Access control: every route x {no key, wrong key, read, write, admin}, what a key leaves
on the jobs it dispatched and in the audit trail, the OpenAPI security scheme, test routes
switched off, CORS, and the refusal to serve an open API beyond loopback.

In-process against the real Redis (the roles are decided before any flow runs, but the
routes that pass them run for real); the limits shared between API processes are in
test_limits.py.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from conftest import api_client, make_settings, settings_env, wait_until
from pocketqueue.api.app import create_app
from pocketqueue.api.auth import app_routes, required_role
from pocketqueue.config import Settings
from pocketqueue.embedded import free_port
from pocketqueue.keyring import Role, digest
from test_api import assert_problem

SECRETS = {
    "dash": "read-key-0123456789abcdef",
    "web": "write-key-0123456789abcdef",
    "ops": "admin-key-0123456789abcdef",
}
# ops is configured by its digest only, as a keys file would hold it.
KEYS = f"dash:read:{SECRETS['dash']},web:write:{SECRETS['web']},ops:admin:sha256:{digest(SECRETS['ops']).hex()}"
ROLE_OF_KEY = {"dash": Role.READ, "web": Role.WRITE, "ops": Role.ADMIN}

# The role each operation needs: this test's own table, so a route that lands with the
# wrong role, or with none, fails here.
EXPECTED_ROLE = {
    "create_job": Role.WRITE,
    "read_job": Role.READ,
    "wait_job": Role.READ,
    "cancel_job": Role.WRITE,
    "read_jobs": Role.WRITE,
    "list_tasks": Role.READ,
    "list_dead_letters": Role.READ,
    "retry_job": Role.ADMIN,
    "retry_dead_letters": Role.ADMIN,
    "read_health": Role.READ,
    "list_workers": Role.READ,
    "list_jobs": Role.READ,
    "read_stats": Role.READ,
    "read_metrics": Role.READ,
    "stream_job_events": Role.READ,
    "stream_events": Role.READ,
    "probe_redis": Role.ADMIN,
    "create_debug_job": Role.ADMIN,
    "list_schedules": Role.READ,
    "pause_schedule": Role.ADMIN,
    "resume_schedule": Role.ADMIN,
    "trigger_schedule": Role.ADMIN,
    "create_batch": Role.WRITE,
    "read_batch": Role.READ,
    "read_audit": Role.ADMIN,
}

# A request each route accepts from a key with its role (bodies that pass the schema).
BODIES: dict[str, Any] = {
    "create_job": {"task": "pocketqueue.debug"},
    "read_jobs": {"job_ids": ["no-such-job"]},
    "create_batch": {"jobs": [{"task": "pocketqueue.debug"}]},
}
# No stream is opened in-process (the ASGI test transport holds a stream until it ends, and
# one left open hung a teardown): a key allowed to read the global stream gets a 422 for
# the bad status (the key is checked first), and the job stream a 404 for the unknown job.
QUERIES = {"stream_events": {"status": "not-a-status"}, "wait_job": {"timeout": "0"}}


@pytest.fixture
def keyed(redis_url: str, session_id: str) -> Settings:
    return make_settings(redis_url, session_id, queue_api_keys=KEYS)


@pytest.fixture
async def keyed_client(keyed: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(keyed) as client:
        yield client


def routes(settings: Settings) -> list[tuple[str, APIRoute]]:
    """The API's routes (the dashboard's page and login are open, and out of the document)."""
    return [(path, route) for path, route in app_routes(create_app(settings)) if route.include_in_schema]


def request_for(path: str, route: APIRoute) -> tuple[str, str, dict[str, Any]]:
    """(method, path, httpx keywords) for one call of the route."""
    for name in ("job_id", "batch_id", "name"):
        path = path.replace("{" + name + "}", "no-such-" + name.replace("_", "-"))
    (method,) = route.methods
    options: dict[str, Any] = {"params": QUERIES.get(route.name, {})}
    if route.name in BODIES:
        options["json"] = BODIES[route.name]
    return method, path, options


def headers_for(who: str) -> dict[str, str]:
    if who == "none":
        return {}
    if who == "wrong":
        return {"Authorization": "Bearer not-a-key-this-api-knows-0000"}
    if who == "ops":  # the other header, so both are covered
        return {"X-API-Key": SECRETS["ops"]}
    return {"Authorization": f"Bearer {SECRETS[who]}"}


def test_every_route_declares_the_role_the_table_gives(keyed: Settings) -> None:
    declared = {route.name: required_role(route) for _, route in routes(keyed)}
    assert declared == EXPECTED_ROLE


@pytest.mark.parametrize("who", ["none", "wrong", "dash", "web", "ops"])
async def test_each_route_answers_each_caller_by_role(
    keyed: Settings, keyed_client: httpx.AsyncClient, who: str
) -> None:
    seen = set()
    for full_path, route in routes(keyed):
        method, path, options = request_for(full_path, route)
        response = await keyed_client.request(method, path, headers=headers_for(who), **options)
        needed = EXPECTED_ROLE[route.name]
        where = f"{who} {method} {path}: {response.status_code} {response.text[:300]}"
        if who in ("none", "wrong"):
            body = assert_problem(response, 401, "unauthorized")
            assert response.headers["WWW-Authenticate"] == 'Bearer realm="pocketqueue"', where
            assert "not-a-key" not in response.text, "a wrong key must never be echoed"
            assert body["detail"], where
        elif ROLE_OF_KEY[who] < needed:
            body = assert_problem(response, 403, "forbidden")
            assert body["required_role"] == needed.label, where
            assert needed.label in body["detail"], where
            assert who in body["detail"], where
        else:
            assert response.status_code not in (401, 403), where
            assert response.status_code < 500, where
        seen.add(route.name)
    assert seen == set(EXPECTED_ROLE)


async def test_the_docs_and_the_document_need_no_key(keyed_client: httpx.AsyncClient) -> None:
    assert (await keyed_client.get("/docs")).status_code == 200
    spec = (await keyed_client.get("/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "description": schemes["bearer"]["description"]}
    assert schemes["apiKey"]["in"] == "header"
    assert schemes["apiKey"]["name"] == "X-API-Key"
    for path_item in spec["paths"].values():
        for operation in path_item.values():
            role = EXPECTED_ROLE[operation["operationId"]]
            assert {"bearer": []} in operation["security"]
            assert {"apiKey": []} in operation["security"]
            assert operation["x-required-role"] == role.label
            assert "401" in operation["responses"]
            assert ("403" in operation["responses"]) == (role > Role.READ), operation["operationId"]


async def test_without_keys_the_api_is_open_and_its_document_promises_no_401(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "securitySchemes" not in spec["components"]
    for path_item in spec["paths"].values():
        for operation in path_item.values():
            assert "security" not in operation
            assert "401" not in operation["responses"]
    assert (await client.get("/api/queue/stats")).status_code == 200


async def test_a_job_records_the_name_of_the_key_that_dispatched_it(keyed_client: httpx.AsyncClient) -> None:
    web = headers_for("web")
    job = (await keyed_client.post("/api/queue/dispatch", json={"task": "pocketqueue.debug"}, headers=web)).json()
    assert job["dispatched_by"] == "web"
    read = (await keyed_client.get(f"/api/queue/status/{job['job_id']}", headers=headers_for("dash"))).json()
    assert read["dispatched_by"] == "web"
    assert SECRETS["web"] not in str(read)
    batch = {"jobs": [{"task": "pocketqueue.debug"}] * 2}
    created = (await keyed_client.post("/api/queue/batches", json=batch, headers=web)).json()
    children = await keyed_client.post("/api/queue/batch-status", json={"job_ids": created["jobs"]}, headers=web)
    assert [child["dispatched_by"] for child in children.json()["jobs"]] == ["web", "web"]
    debug = (await keyed_client.post("/api/queue/test/debug", headers=headers_for("ops"))).json()
    assert debug["dispatched_by"] == "ops"


async def test_an_anonymous_job_names_no_key(client: httpx.AsyncClient) -> None:
    job = (await client.post("/api/queue/dispatch", json={"task": "pocketqueue.debug"})).json()
    assert job["dispatched_by"] is None


async def test_admin_actions_and_cancels_are_audited_and_only_admins_read_the_trail(
    keyed_client: httpx.AsyncClient,
) -> None:
    web, ops = headers_for("web"), headers_for("ops")
    later = {"task": "pocketqueue.debug", "delay_seconds": 600}  # still scheduled when cancelled, worker or not
    job = (await keyed_client.post("/api/queue/dispatch", json=later, headers=web)).json()
    assert (await keyed_client.delete(f"/api/queue/cancel/{job['job_id']}", headers=web)).status_code == 200
    # A refused action changes nothing, so it leaves no entry.
    assert (await keyed_client.post(f"/api/queue/retry/{job['job_id']}", headers=ops)).status_code == 409
    assert await keyed_client.post("/api/queue/dead-letter/retry", json={"job_ids": [job["job_id"]]}, headers=ops)
    assert_problem(await keyed_client.get("/api/queue/audit", headers=web), 403, "forbidden")
    page = (await keyed_client.get("/api/queue/audit", params={"limit": 2}, headers=ops)).json()
    newest, cancel = page["entries"]
    assert (newest["who"], newest["action"], newest["job_ids"], newest["job_count"]) == (
        "ops",
        "retry_dead_letters",
        [],
        0,
    )
    assert (cancel["who"], cancel["action"], cancel["job_ids"]) == ("web", "cancel_job", [job["job_id"]])
    assert page["next_before"] == cancel["id"]
    older = (await keyed_client.get("/api/queue/audit", params={"before": cancel["id"]}, headers=ops)).json()
    assert all(entry["id"] < cancel["id"] or len(entry["id"]) < len(cancel["id"]) for entry in older["entries"])
    assert cancel["id"] not in [entry["id"] for entry in older["entries"]]
    # Nothing is older than the first possible id (Redis refuses an exclusive `(0-0`).
    first = await keyed_client.get("/api/queue/audit", params={"before": "0-0"}, headers=ops)
    assert first.json() == {"entries": [], "next_before": None}


async def test_test_routes_can_be_switched_off(redis_url: str, session_id: str) -> None:
    async with api_client(make_settings(redis_url, session_id, queue_test_routes=False)) as client:
        assert (await client.post("/api/queue/test/debug")).status_code == 404
        assert (await client.post("/api/queue/test/redis")).status_code == 404
        paths = (await client.get("/openapi.json")).json()["paths"]
        assert not [path for path in paths if "/test/" in path]


async def test_cors_is_off_unless_origins_are_listed(
    client: httpx.AsyncClient, redis_url: str, session_id: str
) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    response = await client.options("/api/queue/dispatch", headers=preflight)
    assert "access-control-allow-origin" not in response.headers
    listed = make_settings(redis_url, session_id, api_cors_origins=["https://app.example"])
    async with api_client(listed) as cors:
        allowed = await cors.options("/api/queue/dispatch", headers=preflight)
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
        other = await cors.options("/api/queue/dispatch", headers={**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def run_api_command(settings: Settings, **env: str) -> subprocess.Popen[str]:
    child_env = {**settings_env(settings), "API_PORT": str(free_port()), **env}
    return subprocess.Popen(
        [sys.executable, "-m", "pocketqueue", "api"],
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_an_open_api_beyond_loopback_refuses_to_start_in_one_line(settings: Settings) -> None:
    process = run_api_command(settings, API_HOST="0.0.0.0")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "QUEUE_API_KEYS" in lines[0]
    assert "QUEUE_ALLOW_ANONYMOUS" in lines[0]
    assert "0.0.0.0" in lines[0]


@pytest.mark.parametrize(
    "env",
    [{"QUEUE_ALLOW_ANONYMOUS": "true"}, {"QUEUE_API_KEYS": f"ops:admin:{SECRETS['ops']}"}],
    ids=["anonymous-on-purpose", "with-keys"],
)
def test_beyond_loopback_it_starts_with_keys_or_when_told_to(settings: Settings, env: dict[str, str]) -> None:
    port = free_port()
    child_env = {**settings_env(settings), "API_HOST": "0.0.0.0", "API_PORT": str(port), **env}
    command = [sys.executable, "-m", "pocketqueue", "api"]
    process = subprocess.Popen(command, env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def answered() -> bool:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        try:
            return httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(answered, timeout=30, interval=0.1)
    finally:
        process.terminate()
        process.communicate(timeout=20)  # reads and closes the pipe


def test_a_bad_key_setting_is_refused_without_showing_its_secret(settings: Settings) -> None:
    secret = f"s3cret-{uuid.uuid4().hex}"
    process = run_api_command(settings, QUEUE_API_KEYS=f"grafana:root:{secret}")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "grafana" in err
    assert "read, write, admin" in err
    assert secret not in out + err


def test_key_new_prints_a_key_and_an_entry_holding_only_its_hash(tmp_path: Any, settings: Settings) -> None:
    env = settings_env(settings)
    run = subprocess.run(
        [sys.executable, "-m", "pocketqueue", "key", "new", "grafana", "read"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    secret = run.stdout.splitlines()[0].rsplit(" ", 1)[1]
    entry = run.stdout.splitlines()[1].rsplit(" ", 1)[1]
    assert secret not in entry
    assert entry.startswith("grafana:read:sha256:")
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# comment\n{entry}\n")
    configured = Settings(_env_file=None, queue_api_keys_file=keys_file)  # type: ignore[call-arg]
    found = configured.keyring.identify(secret)
    assert found is not None
    assert (found.name, found.role) == ("grafana", Role.READ)
    assert configured.keyring.identify(secret + "x") is None
