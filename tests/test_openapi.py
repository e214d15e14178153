"""The HTTP contract: the body limit, problem documents for every error, bounded
parameters, and an OpenAPI document that schemathesis checks against the real API
(uvicorn on a loopback port, a real Redis and a real worker).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from conftest import ApiProcess, WorkerProcess, api_client, make_settings
from pocketqueue.api.schemas import MAX_OFFSET
from pocketqueue.config import Settings
from pocketqueue.jobs.keys import queue_lists
from test_api import PROBLEM, assert_problem

LIMIT = 1_048_576  # API_MAX_BODY_BYTES's default
CHUNK = 64 * 1024
BODY_ROUTES = [
    "/api/queue/dispatch",
    "/api/queue/batch-status",
    "/api/queue/dead-letter/retry",
    "/api/queue/test/debug",
]


class Chunks:
    """A request body sent chunk by chunk without Content-Length; counts what the API pulled."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.pulled * CHUNK < self.total:
            self.pulled += 1
            yield b" " * CHUNK


def assert_too_large(response: httpx.Response, limit: int = LIMIT) -> None:
    body = assert_problem(response, 413, "content-too-large")
    assert str(limit) in body["detail"]
    assert "API_MAX_BODY_BYTES" in body["detail"]


async def test_a_body_over_the_limit_is_refused_before_a_byte_is_read(client: httpx.AsyncClient) -> None:
    body = Chunks(2 * LIMIT)
    response = await client.post(
        "/api/queue/dispatch",
        content=body,
        headers={"content-type": "application/json", "content-length": str(body.total)},
    )
    assert_too_large(response)
    assert body.pulled == 0


async def test_a_chunked_body_is_cut_off_as_soon_as_it_passes_the_limit(client: httpx.AsyncClient) -> None:
    body = Chunks(100 * LIMIT)
    response = await client.post("/api/queue/batch-status", content=body, headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    assert_too_large(response)
    assert body.pulled == LIMIT // CHUNK + 1


async def test_a_body_at_the_limit_is_read_and_validated(client: httpx.AsyncClient) -> None:
    padded = b'{"job_ids": ["a"]' + b" " * (LIMIT - 18) + b"}"
    assert len(padded) == LIMIT
    response = await client.post(
        "/api/queue/batch-status", content=padded, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["missing"] == ["a"]


async def test_the_limit_is_the_setting(redis_url: str, session_id: str) -> None:
    async with api_client(make_settings(redis_url, session_id, api_max_body_bytes=2048)) as small:
        response = await small.post("/api/queue/dispatch", content=b" " * 2049)
        assert_too_large(response, 2048)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/api/queue/tasks", "GET"),
        ("GET", "/api/queue/dispatch", "POST"),
        ("POST", "/api/queue/cancel/x", "DELETE"),
    ],
)
async def test_a_wrong_method_is_a_405_problem_with_allow(
    client: httpx.AsyncClient, method: str, path: str, allowed: str
) -> None:
    response = await client.request(method, path)
    body = assert_problem(response, 405, "method-not-allowed")
    assert response.headers["allow"] == allowed
    assert allowed in body["detail"]


@pytest.mark.parametrize("offset", [2**63, MAX_OFFSET + 1, -1])
async def test_dead_letter_offset_is_bounded(client: httpx.AsyncClient, offset: int) -> None:
    response = await client.get("/api/queue/dead-letter", params={"offset": offset})
    body = assert_problem(response, 422, "invalid-request")
    assert body["errors"][0]["loc"] == ["query", "offset"]


async def test_dead_letter_offset_takes_its_maximum(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/queue/dead-letter", params={"offset": MAX_OFFSET})
    assert response.status_code == 200
    assert response.json()["jobs"] == []


@pytest.mark.parametrize("path", BODY_ROUTES)
@pytest.mark.parametrize(
    ("content", "error_type"),
    [
        (b"{nope", "json_invalid"),
        (b'{"task": "\xff"}', "body_undecodable"),  # not UTF-8
        (b"[" * 100_000, "body_undecodable"),  # nested past the JSON parser's recursion limit
    ],
    ids=["malformed", "not-utf8", "too-deep"],
)
async def test_a_body_that_is_not_json_is_the_documented_422_problem(
    client: httpx.AsyncClient, path: str, content: bytes, error_type: str
) -> None:
    response = await client.post(path, content=content, headers={"content-type": "application/json"})
    body = assert_problem(response, 422, "invalid-request")
    assert [error["type"] for error in body["errors"]] == [error_type]
    assert body["errors"][0]["loc"][0] == "body"


@pytest.fixture
async def spec(client: httpx.AsyncClient) -> dict[str, Any]:
    document: dict[str, Any] = (await client.get("/openapi.json")).json()
    return document


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", operation


def problem_schema(response: dict[str, Any]) -> Any:
    assert list(response.get("content", {})) == [PROBLEM], response
    return response["content"][PROBLEM]["schema"]


async def test_every_error_is_documented_as_a_problem_document(spec: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in str(spec)
    assert {"Problem", "ValidationIssue"} <= set(spec["components"]["schemas"])
    for name, operation in operations(spec):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                schema = problem_schema(response)
                assert "#/components/schemas/Problem" in str(schema), (name, status)


async def test_each_route_documents_422_413_and_503_where_it_can_answer_them(spec: dict[str, Any]) -> None:
    for name, operation in operations(spec):
        responses = operation["responses"]
        validates = bool(operation.get("parameters") or operation.get("requestBody"))
        assert ("422" in responses) == validates, name
        assert ("413" in responses) == ("requestBody" in operation), name
        # Every route but the task list reads or writes Redis.
        assert ("503" in responses) == (operation["operationId"] != "list_tasks"), name


async def test_operation_ids_are_the_handler_names(spec: dict[str, Any]) -> None:
    assert sorted(operation["operationId"] for _, operation in operations(spec)) == sorted(
        [
            "create_job",
            "read_job",
            "wait_job",
            "cancel_job",
            "read_jobs",
            "list_tasks",
            "list_dead_letters",
            "retry_job",
            "retry_dead_letters",
            "read_health",
            "list_workers",
            "list_jobs",
            "read_stats",
            "read_metrics",
            "stream_job_events",
            "stream_events",
            "probe_redis",
            "create_debug_job",
            "list_schedules",
            "pause_schedule",
            "resume_schedule",
            "trigger_schedule",
            "create_batch",
            "read_batch",
            "read_audit",
        ]
    )


async def test_dispatch_links_to_the_operations_that_take_its_job_id(spec: dict[str, Any]) -> None:
    by_id = {operation["operationId"]: operation for _, operation in operations(spec)}
    for operation_id, status in [("create_job", "202"), ("create_job", "200"), ("create_debug_job", "202")]:
        links = by_id[operation_id]["responses"][status]["links"]
        assert set(links) == {"read_job", "wait_job", "cancel_job", "retry_job"}
        for link in links.values():
            assert link["parameters"] == {"job_id": "$response.body#/job_id"}
            target = by_id[link["operationId"]]
            assert [p["name"] for p in target["parameters"] if p["in"] == "path"] == ["job_id"]


# --- schemathesis against the real thing --------------------------------------------

SCHEMATHESIS_CONFIG = """
# Exceptions to the defaults, each with why. Nothing else is excluded or relaxed.

[[operations]]
include-operation-id = "wait_job"
# A wait lasts `timeout` seconds (default 30, at most 300) on a job that has not finished.
# Schemathesis feeds waits the ids of jobs it dispatched (links and its resource pool),
# and the debug jobs it dispatches sleep up to an hour, so every such wait would run to
# its timeout and the run would take hours. The timeout's bounds are pinned in
# test_api.py (test_wait_timeout_is_bounded); here it is fixed at half a second.
parameters = { "query.timeout" = 0.5 }

[[operations]]
include-operation-id = "stream_job_events"
# An event stream lasts until the job ends (the debug jobs schemathesis dispatches sleep
# up to an hour), and the global one never ends: each is cut after half a second by the
# route's own `timeout` (its bounds and the resume after it are pinned in test_events.py).
parameters = { "query.timeout" = 0.5 }

[[operations]]
include-operation-id = "stream_events"
parameters = { "query.timeout" = 0.5 }

[[operations]]
include-operation-id = "create_job"
# A body can match the schema and still not become a job, for reasons a JSON Schema cannot
# state: args that do not fit the task's signature (the registry knows it, the schema
# does not), an eta more than 366 days after now, args nested past QUEUE_MAX_JSON_DEPTH
# or holding integers past 64 bits, an Idempotency-Key header that differs from the
# body's idempotency_key. Each is a 422 problem by design, pinned in test_api.py and
# test_hostile_input.py; every other check, and every other status, still applies.
checks.positive_data_acceptance.expected-statuses = ["2xx", "404", "409", "422"]

[[operations]]
include-operation-id = "create_batch"
# Each job of a batch, and its on_complete, is a dispatch body: the same reasons apply,
# plus one more: on_complete is called with the keyword argument `batch`, so a callback
# task that cannot take it is refused (422) before anything is queued (test_batches.py).
checks.positive_data_acceptance.expected-statuses = ["2xx", "404", "409", "422"]
"""


CONTRACT_KEY = "contract-admin-key-0123456789"


@pytest.fixture
def contract_api(
    redis_url: str,
    session_id: str,
    start_worker: Callable[[Settings], WorkerProcess],
    start_api: Callable[..., ApiProcess],
    sync_redis: redis.Redis,
) -> Iterator[str]:
    """`python -m pocketqueue api` on a free loopback port, with a worker and an admin key; yields its base URL.

    On a queue and key prefix of its own, not the session's: schemathesis dispatches jobs
    that sleep up to an hour, which would hold the session worker's slots. A one-second
    shutdown grace hands them back when the worker stops; then their keys are deleted.
    """
    settings = make_settings(redis_url, f"{session_id}-contract", queue_shutdown_grace_seconds=1)
    worker = start_worker(settings)
    api = start_api(settings, QUEUE_API_KEYS=f"fuzzer:admin:{CONTRACT_KEY}")
    try:
        yield api.url
    finally:
        api.stop()
        worker.stop()  # before the clean-up: stopping hands its running jobs back to the queue
        keys = list(sync_redis.scan_iter(f"{settings.queue_key_prefix}:*", count=1000))
        sync_redis.delete(*keys, *queue_lists(settings.queue_name))


def figure(output: str, pattern: str) -> str:
    """One figure from schemathesis's summary, e.g. `Tested: 12`."""
    found = re.search(pattern, output)
    assert found, f"no {pattern!r} in:\n{output}"
    return found.group(1)


@pytest.mark.timeout(300)
def test_schemathesis_finds_no_failure(contract_api: str, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG)
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--no-color",
        f"--config-file={config}",
        "run",
        f"{contract_api}/openapi.json",
        "--checks=all",
        "--phases=examples,coverage,fuzzing,stateful",  # stateful follows the OpenAPI links
        "--max-examples=15",  # per operation and phase: 26 operations, about 50 s on two cores
        "--seed=20261130",  # the same cases every run; change it to explore further
        "--workers=1",
        "--request-timeout=10",
        f"--header=Authorization:Bearer {CONTRACT_KEY}",  # ignored_auth also tries without it: a 401
        "--generation-database=none",
    ]
    # Run in tmp_path, so schemathesis writes nothing into the repository.
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    paths = httpx.get(f"{contract_api}/openapi.json").json()["paths"]
    total = sum(len(item) for item in paths.values())
    # Every operation in the document was tested: none skipped, none filtered out.
    assert figure(output, r"Selected: (\d+/\d+)") == f"{total}/{total}", output
    assert figure(output, r"Tested: (\d+)") == str(total), output
    print(f"schemathesis: {total} operations,", figure(output, r"(\d+ generated[^\n]*)"))
