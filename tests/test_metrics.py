"""`GET /metrics`: cluster-wide counters, histograms and gauges, read by the official Prometheus parser."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from conftest import WorkerProcess, api_client, make_settings
from pocketqueue.config import Settings
from pocketqueue.jobs.keys import HISTOGRAM_BUCKETS, queue_lists
from test_lifecycle import private_settings

StartWorker = Callable[[Settings], WorkerProcess]
Families = dict[str, Metric]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TASK_COUNTERS = ["sent", "received", "started", "succeeded", "failed", "retried", "revoked"]


async def scrape(client: httpx.AsyncClient) -> Families:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CONTENT_TYPE
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def value(families: Families, sample_name: str, **labels: str) -> float | None:
    """The value of the one sample with that name and exactly those labels (None: no such sample)."""
    family = families[sample_name.removesuffix("_total").removesuffix("_count").removesuffix("_sum")]
    found = [s.value for s in family.samples if s.name == sample_name and s.labels == labels]
    assert len(found) <= 1, found
    return found[0] if found else None


def samples(families: Families, family: str) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    return {(s.name, tuple(sorted(s.labels.items())), s.value) for s in families[family].samples}


async def dispatch(client: httpx.AsyncClient, task: str, headers: dict[str, str] | None = None, **body: Any) -> str:
    response = await client.post("/api/queue/dispatch", json={"task": task, **body}, headers=headers or {})
    assert response.status_code in (200, 202), response.text
    job_id: str = response.json()["job_id"]
    return job_id


async def wait(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/queue/wait/{job_id}", params={"timeout": 30})
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


async def poll(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """`wait_until` for an async check."""
    deadline = time.monotonic() + timeout
    while not (found := await check()):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)
    return found


@pytest.fixture
def cleanup(sync_redis: redis.Redis) -> Iterator[Callable[[Settings], Settings]]:
    """Settings of this test's own, whose keys are deleted when it ends.

    Ask for it before `start_worker`, so the workers have stopped (and written their last
    keys) by the time it deletes them.
    """
    used: list[Settings] = []

    def use(settings: Settings) -> Settings:
        used.append(settings)
        return settings

    yield use
    for settings in used:
        keys = list(sync_redis.scan_iter(f"{settings.queue_key_prefix}:*", count=1000))
        sync_redis.delete(*keys, *queue_lists(settings.queue_name))


async def test_counters_histograms_and_gauges_say_what_the_jobs_did_from_any_api_process(
    redis_url: str, cleanup: Callable[[Settings], Settings], start_worker: StartWorker
) -> None:
    settings = cleanup(private_settings(redis_url))
    start_worker(settings)
    async with api_client(settings) as client, api_client(settings) as other:
        succeeded = [await dispatch(client, "tests.add", args=[1, n]) for n in range(2)]
        retried = await dispatch(other, "tests.flaky", kwargs={"fail_times": 1}, max_retries=1)
        failed = await dispatch(client, "tests.fail", args=["no luck"])
        key = {"Idempotency-Key": uuid.uuid4().hex}
        first = await dispatch(client, "tests.add", args=[5, 5], headers=key)
        assert await dispatch(other, "tests.add", args=[5, 5], headers=key) == first  # an idempotent repeat
        cancelled = await dispatch(client, "tests.add", args=[0, 0], delay_seconds=600)
        assert (await client.delete(f"/api/queue/cancel/{cancelled}")).status_code == 200

        outcomes = {job_id: (await wait(client, job_id))["status"] for job_id in [*succeeded, retried, failed, first]}
        assert outcomes == {**dict.fromkeys([*succeeded, retried, first], "completed"), failed: "failed"}
        # The worker names itself `pocketqueue.<pid>@<host>`; `hostname` is the host, as
        # celery-exporter has it (a restarted worker keeps its series).
        host = (await wait(client, first))["worker"].partition("@")[2]
        assert host

        families = await scrape(client)
        on_worker = {"hostname": host, "queue_name": settings.queue_name}
        by_api = {"hostname": "", "queue_name": settings.queue_name}
        # Each job once, from the API (the cancelled one too: it was published, delayed).
        expected: dict[tuple[str, str, str], float] = {
            ("sent", "tests.add", ""): 4,
            ("sent", "tests.flaky", ""): 1,
            ("sent", "tests.fail", ""): 1,
            # Every attempt a worker claimed and started: flaky ran twice.
            ("received", "tests.add", host): 3,
            ("received", "tests.flaky", host): 2,
            ("received", "tests.fail", host): 1,
            ("started", "tests.add", host): 3,
            ("started", "tests.flaky", host): 2,
            ("started", "tests.fail", host): 1,
            ("succeeded", "tests.add", host): 3,
            ("succeeded", "tests.flaky", host): 1,
            ("failed", "tests.fail", host): 1,
            ("retried", "tests.flaky", host): 1,
            ("revoked", "tests.add", ""): 1,  # cancelled before any worker had it
        }
        seen = {
            (counter, s.labels["name"], s.labels["hostname"]): s.value
            for counter in TASK_COUNTERS
            for s in families[f"celery_task_{counter}"].samples
            if s.name == f"celery_task_{counter}_total"
        }
        assert seen == expected
        for (counter, task, hostname), count in expected.items():
            labels = {**(on_worker if hostname else by_api), "name": task}
            assert value(families, f"celery_task_{counter}_total", **labels) == count
        repeat = {"name": "tests.add", "hostname": "", "queue_name": ""}
        assert value(families, "pocketqueue_idempotent_repeats_total", **repeat) == 1
        assert families["pocketqueue_recovered"].samples == []

        # Run time: one observation per attempt that ended (6); queue wait: one per start (6).
        for histogram in ("celery_task_runtime", "pocketqueue_queue_wait_seconds"):
            counts = {s.labels["name"]: s.value for s in families[histogram].samples if s.name == f"{histogram}_count"}
            assert counts == {"tests.add": 3, "tests.flaky": 2, "tests.fail": 1}, histogram
            for task in counts:
                labels = {**on_worker, "name": task}
                buckets = [
                    (s.labels["le"], s.value)
                    for s in families[histogram].samples
                    if s.name == f"{histogram}_bucket" and s.labels.items() >= labels.items()
                ]
                assert [le for le, _ in buckets] == [*(str(b) for b in HISTOGRAM_BUCKETS), "+Inf"]
                values = [v for _, v in buckets]
                assert values == sorted(values), (histogram, task, values)  # cumulative, so monotone
                assert values[-1] == value(families, f"{histogram}_count", **labels)
                assert value(families, f"{histogram}_sum", **labels) >= 0  # type: ignore[operator]

        assert value(families, "celery_worker_up", hostname=host) == 1
        # Running jobs come from the worker's heartbeat (every lease/3): the last jobs
        # leave it within one beat of finishing.
        deadline = asyncio.get_running_loop().time() + 10
        while value(families, "celery_worker_tasks_active", hostname=host) != 0:
            assert asyncio.get_running_loop().time() < deadline, "running jobs never left the heartbeat"
            await asyncio.sleep(0.2)
            families = await scrape(client)
        assert value(families, "pocketqueue_workers_stalled") == 0
        assert value(families, "celery_queue_length", queue_name=settings.queue_name) == 0
        for priority in ("high", "normal", "low"):
            assert value(families, "pocketqueue_queue_length", queue_name=settings.queue_name, priority=priority) == 0
        jobs = {s.labels["status"]: s.value for s in families["pocketqueue_jobs"].samples}
        assert jobs == {
            **dict.fromkeys(["scheduled", "queued", "processing", "retrying", "partial"], 0),
            "completed": 4,
            "failed": 1,
            "cancelled": 1,
        }
        assert value(families, "pocketqueue_dead_letters") == 1

        # The other API process reads the same Redis: the same totals.
        again = await scrape(other)
        for name in [*(f"celery_task_{c}" for c in TASK_COUNTERS), "celery_task_runtime", "pocketqueue_jobs"]:
            assert samples(again, name) == samples(families, name), name


async def test_a_running_job_shows_as_active_and_a_message_waiting_as_queue_length(
    redis_url: str, cleanup: Callable[[Settings], Settings], start_worker: StartWorker
) -> None:
    settings = cleanup(private_settings(redis_url, worker_concurrency=1))
    start_worker(settings)
    async with api_client(settings) as client:
        running = await dispatch(client, "tests.runs", args=[f"{settings.queue_key_prefix}:runs"], kwargs={"sleep": 30})
        waiting = await dispatch(client, "tests.add", args=[1, 1], priority="high")

        async def busy() -> Families | None:
            families = await scrape(client)
            active = [s.value for s in families["celery_worker_tasks_active"].samples if s.value]
            return families if active == [1] else None

        families = await poll(busy)
        assert value(families, "celery_queue_length", queue_name=settings.queue_name) == 1
        assert value(families, "pocketqueue_queue_length", queue_name=settings.queue_name, priority="high") == 1
        assert value(families, "pocketqueue_jobs", status="processing") == 1
        assert value(families, "pocketqueue_jobs", status="queued") == 1
        for job_id in (running, waiting):
            assert (await client.delete(f"/api/queue/cancel/{job_id}")).status_code == 200


async def test_counters_of_several_hosts_add_up_buckets_cumulate_and_old_hosts_are_dropped(
    redis_url: str, sync_redis: redis.Redis, cleanup: Callable[[Settings], Settings]
) -> None:
    settings = cleanup(private_settings(redis_url))
    prefix, queue = settings.queue_key_prefix, settings.queue_name
    now = float(sync_redis.time()[0])  # type: ignore[index]
    # Two workers on one machine (one `hostname`), one gone for eight days.
    for worker, buckets in [("pocketqueue.1@box", {1: 2, 3: 1}), ("pocketqueue.2@box", {3: 4, 20: 1})]:
        fields = {f"runtime_bucket\tt\t{queue}\t{i}": n for i, n in buckets.items()}
        fields |= {f"succeeded\tt\t{queue}": sum(buckets.values()), f"runtime_sum\tt\t{queue}": 1_000_500_000}
        sync_redis.hset(f"{prefix}:metrics:{worker}", mapping=fields)
        sync_redis.zadd(f"{prefix}:metrics", {worker: now - 5})
    sync_redis.hset(f"{prefix}:metrics:pocketqueue.3@old", f"succeeded\tt\t{queue}", 7)
    sync_redis.zadd(f"{prefix}:metrics", {"pocketqueue.3@old": now - 8 * 86400})

    async with api_client(settings) as client:
        families = await scrape(client)
    labels = {"name": "t", "hostname": "box", "queue_name": queue}
    assert value(families, "celery_task_succeeded_total", **labels) == 8
    assert value(families, "celery_task_runtime_sum", **labels) == 2001
    assert value(families, "celery_task_runtime_count", **labels) == 8
    cumulative = {
        s.labels["le"]: s.value for s in families["celery_task_runtime"].samples if s.name.endswith("_bucket")
    }
    # Bucket 1 is le=0.005, 3 is le=0.025, 20 (one past the last bound) is +Inf.
    assert (cumulative["0.005"], cumulative["0.01"], cumulative["0.025"], cumulative["3600.0"]) == (2, 2, 7, 7)
    assert cumulative["+Inf"] == 8
    # The old host is gone, key and all; `box` wrote lately but has no live worker: down.
    assert not any(s.labels.get("hostname") == "old" for f in families.values() for s in f.samples)
    assert not sync_redis.exists(f"{prefix}:metrics:pocketqueue.3@old")
    assert sync_redis.zscore(f"{prefix}:metrics", "pocketqueue.3@old") is None
    assert value(families, "celery_worker_up", hostname="box") == 0
    assert value(families, "celery_worker_tasks_active", hostname="box") == 0


async def test_metrics_is_at_the_root_and_documented_as_prometheus_text(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/queue/metrics")).status_code == 404
    spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"]["/metrics"]["get"]
    assert operation["operationId"] == "read_metrics"
    assert list(operation["responses"]["200"]["content"]) == [CONTENT_TYPE]
    assert "503" in operation["responses"]


async def test_metrics_with_redis_down_is_a_503_problem(session_id: str) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with api_client(make_settings(f"redis://127.0.0.1:{port}/0", session_id)) as client:
        response = await client.get("/metrics")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("redis-unavailable")
