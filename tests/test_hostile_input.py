"""Hostile input: what a worker could not carry is refused before anything is written,
every record that exists can be read, and requests are typed exactly.

Against a real Redis and the session's real worker; records that an older version could
have written are put in Redis by hand, as that version would have left them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis

from conftest import WorkerProcess
from pocketqueue import flows
from pocketqueue.config import Settings
from pocketqueue.errors import InvalidRequest
from pocketqueue.jobs.keys import Keys, queue_lists
from pocketqueue.nodes import DispatchRequest
from pocketqueue.runtime import QueueRuntime
from test_api import assert_problem, dispatch

pytestmark = pytest.mark.usefixtures("worker")


def nested(levels: int, leaf: Any = 1) -> Any:
    """`leaf` inside `levels` lists: nested(2) == [[1]]."""
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


def nested_objects(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


async def post_json(client: httpx.AsyncClient, path: str, body: Any) -> httpx.Response:
    """POST `body` as a hostile client sends it: JSON with \\u escapes, lone surrogates included."""
    return await client.post(path, content=json.dumps(body).encode(), headers={"content-type": "application/json"})


def footprint(client: redis.Redis, settings: Settings) -> set[str]:
    """Every job-related key, and the id of every message waiting in the queue's lists.

    Jobs of earlier tests may still be finishing (their keys go, their messages are
    taken), so a test compares what is new, never the counts.
    """
    prefix = settings.queue_key_prefix
    found = {key for kind in ("job", "idempotency", "unique") for key in client.scan_iter(f"{prefix}:{kind}:*")}
    for name in queue_lists(settings.queue_name):
        found.update(f"message:{json.loads(raw)['headers']['id']}" for raw in client.lrange(name, 0, -1))
    return found


HOSTILE: list[tuple[str, dict[str, Any], str]] = [
    ("too deep", {"task": "pocketqueue.debug", "kwargs": {"result": nested(32)}}, "nested deeper than 32 levels"),
    ("500 levels", {"task": "pocketqueue.debug", "kwargs": {"result": nested_objects(500)}}, "nested deeper"),
    ("lone surrogate", {"task": "pocketqueue.debug", "kwargs": {"result": "a\ud800b"}}, "lone surrogate"),
    ("surrogate key", {"task": "pocketqueue.debug", "kwargs": {"result": {"\udfff": 1}}}, "lone surrogate"),
    ("surrogate unique_key", {"task": "pocketqueue.debug", "unique_key": "u\ud800"}, "unique_key"),
    ("surrogate idempotency_key", {"task": "pocketqueue.debug", "idempotency_key": "i\ud800"}, "idempotency_key"),
    ("huge integer", {"task": "pocketqueue.debug", "kwargs": {"result": 2**64}}, "64 bits"),
]


@pytest.mark.parametrize(("case", "body", "named"), HOSTILE, ids=[case for case, _, _ in HOSTILE])
async def test_what_a_worker_could_not_carry_is_a_422_naming_the_limit_and_writes_nothing(
    client: httpx.AsyncClient, sync_redis: redis.Redis, settings: Settings, case: str, body: dict[str, Any], named: str
) -> None:
    before = footprint(sync_redis, settings)
    response = await post_json(client, "/api/queue/dispatch", body)
    # Keys are plain strings, so the schema refuses those; values of any shape, the payload check.
    problem = assert_problem(response, 422, "invalid-request" if case.endswith("_key") else "invalid-payload")
    assert named in (str(problem["errors"]) if case.endswith("_key") else problem["detail"])
    assert footprint(sync_redis, settings) <= before  # nothing new


@pytest.mark.parametrize("eta", ["9999-12-31T00:00:00Z", "in_400_days"])
async def test_eta_is_bounded_like_delay_seconds(
    client: httpx.AsyncClient, sync_redis: redis.Redis, settings: Settings, eta: str
) -> None:
    if eta == "in_400_days":
        eta = (datetime.now(UTC) + timedelta(days=400)).isoformat()
    before = footprint(sync_redis, settings)
    response = await client.post("/api/queue/dispatch", json={"task": "pocketqueue.debug", "eta": eta})
    assert "366 days" in assert_problem(response, 422, "invalid-request")["detail"]
    assert footprint(sync_redis, settings) <= before  # nothing new


async def test_nesting_at_the_bound_is_carried_there_and_back(client: httpx.AsyncClient) -> None:
    # kwargs is the first level and the leaf object the 32nd: exactly the bound.
    value = nested(30, leaf={"text": "naïve ✓", "big": 2**64 - 1, "small": -(2**63)})
    job = await dispatch(client, "pocketqueue.debug", kwargs={"result": value})
    done = (await client.get(f"/api/queue/wait/{job['job_id']}", params={"timeout": 20})).json()
    assert (done["status"], done["result"]) == ("completed", value)


async def test_the_path_to_the_bad_value_is_named(client: httpx.AsyncClient) -> None:
    body = {"task": "pocketqueue.debug", "kwargs": {"result": [0, {"x": "\ud800"}]}}
    response = await post_json(client, "/api/queue/dispatch", body)
    problem = assert_problem(response, 422, "invalid-payload")
    assert problem["detail"].startswith("kwargs['result'][1]['x']: ")


async def test_python_callers_get_the_same_checks_as_http(runtime: QueueRuntime, settings: Settings) -> None:
    """The dispatch flow, as a pipeline runs it, refuses what HTTP refuses (one code path)."""
    bad = [
        DispatchRequest("pocketqueue.debug", kwargs={"result": nested(40)}),
        DispatchRequest("pocketqueue.debug", kwargs={"result": {1, 2}}),
        DispatchRequest("pocketqueue.debug", kwargs={"result": {3: "int key"}}),
        DispatchRequest("pocketqueue.debug", kwargs={"result": float("nan")}),
        DispatchRequest("pocketqueue.debug", eta=datetime.now(UTC) + timedelta(days=400)),
    ]
    for request in bad:
        shared: dict[str, Any] = {"runtime": runtime, "request": request}
        with pytest.raises(InvalidRequest):
            await flows.run_flow(flows.create_dispatch_flow(), shared)
        assert "job" not in shared


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/queue/test/debug", {"sleep": False}),
        ("/api/queue/test/debug", {"steps": "3"}),
        ("/api/queue/dispatch", {"task": "tests.add", "args": [1, 2], "max_retries": "3"}),
        ("/api/queue/dispatch", {"task": "tests.add", "args": [1, 2], "max_retries": True}),
        ("/api/queue/dispatch", {"task": "tests.add", "args": [1, 2], "delay_seconds": "5"}),
        ("/api/queue/dispatch", {"task": "tests.add", "args": [1, 2], "priority": 1}),
        ("/api/queue/batch-status", {"job_ids": [1]}),
        ("/api/queue/batch-status", {"job_ids": ["x" * 201]}),
    ],
)
async def test_types_are_exact(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> None:
    assert_problem(await client.post(path, json=body), 422, "invalid-request")


async def test_exact_types_still_take_json_spellings(client: httpx.AsyncClient) -> None:
    eta = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    body = {"task": "tests.add", "args": [1, 2], "priority": "high", "max_retries": 2, "eta": eta}
    job = await dispatch(client, **body)
    assert (job["status"], job["priority"], job["max_retries"]) == ("scheduled", "high", 2)
    assert (await client.delete(f"/api/queue/cancel/{job['job_id']}")).status_code == 200
    debug = await client.post("/api/queue/test/debug", json={"sleep": 0, "steps": 1, "result": 7})
    assert debug.status_code == 202


@pytest.mark.parametrize(
    ("kind", "size", "error_type", "named"),
    [
        ("deep", 40, "ResultNotJSON", "nested deeper than 32 levels"),
        ("surrogate", 0, "ResultNotJSON", "lone surrogate"),
        ("big", 1_048_577, "ResultTooLarge", "QUEUE_MAX_RESULT_BYTES (1048576)"),
    ],
)
async def test_a_result_no_reader_could_carry_fails_the_job_clearly(
    client: httpx.AsyncClient, worker: WorkerProcess, kind: str, size: int, error_type: str, named: str
) -> None:
    job = await dispatch(client, "tests.returns", kwargs={"kind": kind, "size": size})
    done = (await client.get(f"/api/queue/wait/{job['job_id']}", params={"timeout": 20})).json()
    assert (done["status"], done["error"]["type"], done["attempts"]) == ("failed", error_type, 1)
    assert named in done["error"]["message"]
    assert done["result"] is None
    follow_up = await dispatch(client, "tests.add", args=[1, 2])  # the worker carried on
    after = (await client.get(f"/api/queue/wait/{follow_up['job_id']}", params={"timeout": 20})).json()
    assert after["status"] == "completed"


async def test_an_error_message_that_is_not_unicode_is_kept_escaped(client: httpx.AsyncClient) -> None:
    job = await dispatch(client, "tests.raises_surrogate")
    done = (await client.get(f"/api/queue/wait/{job['job_id']}", params={"timeout": 20})).json()
    assert (done["status"], done["error"]["message"]) == ("failed", "cannot encode \\ud800 as UTF-8")


@pytest.fixture
def old_records(sync_redis: redis.Redis, settings: Settings) -> Iterator[dict[str, str]]:
    """Records an older version could have written (or a hand edit): unreadable content, and a broken one."""
    keys = Keys(settings.queue_key_prefix)
    now = time.time()
    base = {"task": "tests.add", "status": "failed", "created_at": f"{now:.6f}", "finished_at": f"{now:.6f}"}
    ids = {"deep": str(uuid.uuid4()), "surrogate": str(uuid.uuid4()), "broken": str(uuid.uuid4())}
    records = {
        "deep": {**base, "kwargs": json.dumps({"a": nested_objects(500)}), "args": "[1]"},
        "surrogate": {
            **base,
            "args": '["\\ud800"]',
            "result": '{"x": "\\udfff"}',
            "error": '{"type": "ValueError", "message": "\\ud800"}',
            "error:1": '{"type": "ValueError", "message": "fine", "attempt": 1}',
        },
        "broken": {**base, "status": "not-a-status"},
    }
    for name, fields in records.items():
        sync_redis.hset(keys.job(ids[name]), mapping={"job_id": ids[name], **fields})
        sync_redis.expire(keys.job(ids[name]), 600)
        sync_redis.zadd(keys.dead_letter, {ids[name]: now})
    yield ids
    for job_id in ids.values():
        sync_redis.delete(keys.job(job_id))
        sync_redis.zrem(keys.dead_letter, job_id)


async def test_a_record_that_exists_can_always_be_read(client: httpx.AsyncClient, old_records: dict[str, str]) -> None:
    deep, surrogate = old_records["deep"], old_records["surrogate"]
    for path in (f"/api/queue/status/{deep}", f"/api/queue/wait/{deep}?timeout=0"):
        body = (await client.get(path)).json()
        assert (body["status"], body["args"], body["kwargs"]) == ("failed", [1], {})
        assert "nested deeper than 64 levels" in body["unreadable"]["kwargs"]
    body = (await client.get(f"/api/queue/status/{surrogate}")).json()
    assert (body["args"], body["result"], body["error"]) == ([], None, None)
    assert set(body["unreadable"]) == {"args", "result", "error"}
    assert [error["message"] for error in body["attempt_errors"]] == ["fine"]
    assert "lone surrogate" in body["unreadable"]["args"]
    assert "lone surrogate" in body["unreadable"]["result"]


async def test_one_bad_record_never_breaks_a_listing_for_everyone(
    client: httpx.AsyncClient, old_records: dict[str, str]
) -> None:
    good = await dispatch(client, "tests.add", args=[1, 2])
    ids = [good["job_id"], *old_records.values()]
    batch = await client.post("/api/queue/batch-status", json={"job_ids": ids})
    assert batch.status_code == 200, batch.text
    assert [job["job_id"] for job in batch.json()["jobs"]] == ids[:3]
    assert batch.json()["missing"] == [old_records["broken"]]  # not a job at all: logged, read as missing
    page = await client.get("/api/queue/dead-letter", params={"limit": 500})
    assert page.status_code == 200, page.text
    listed = {job["job_id"] for job in page.json()["jobs"]}
    assert {old_records["deep"], old_records["surrogate"]} <= listed
