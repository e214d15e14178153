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
from pocketqueue.jobs.keys import HISTOGRAM_BUCKETS, Keys, queue_lists
from pocketqueue.observe.workers import stall_seconds
from test_crash_recovery import kill_whole_worker, runs_of
from test_lifecycle import private_settings
from test_workers import celery_control, eventually, heartbeat_bound, listed

StartWorker = Callable[[Settings], WorkerProcess]
Families = dict[str, Metric]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TASK_COUNTERS = ["sent", "received", "started", "succeeded", "failed", "retried", "revoked"]
# Every family labelled (name, hostname, queue_name): what the `metrics:<host>` hashes hold.
TASK_FAMILIES = [
    *(f"celery_task_{counter}" for counter in TASK_COUNTERS),
    "pocketqueue_recovered",
    "pocketqueue_idempotent_repeats",
    "celery_task_runtime",
    "pocketqueue_queue_wait_seconds",
]
DAY = 86400


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


def host_series(families: Families, hostname: str) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    """Every sample of the task counters and histograms with that `hostname` label."""
    return {
        sample
        for family in TASK_FAMILIES
        for sample in samples(families, family)
        if ("hostname", hostname) in sample[1]
    }


def worker_fields(queue: str, succeeded: int, buckets: dict[int, int], runtime_micros: int) -> dict[str, int]:
    """A worker's counters hash as observe.lua writes it: task `t`, run time and queue wait."""
    fields = {f"succeeded\tt\t{queue}": succeeded, f"started\tt\t{queue}": sum(buckets.values())}
    for histogram in ("runtime", "queue_wait"):
        fields |= {f"{histogram}_bucket\tt\t{queue}\t{i}": n for i, n in buckets.items()}
        fields[f"{histogram}_sum\tt\t{queue}"] = runtime_micros
    return fields


def write_host(client: redis.Redis, keys: Keys, worker: str, fields: dict[str, int], at: float) -> None:
    """A worker's hash, and its last write in `metrics`, as the transition scripts leave them."""
    client.hset(keys.metrics(worker), mapping=fields)
    client.zadd(keys.metrics(), {worker: at})


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


async def test_a_stale_hash_beside_a_live_one_of_its_hostname_is_retired_and_no_counter_goes_down(
    redis_url: str, sync_redis: redis.Redis, cleanup: Callable[[Settings], Settings]
) -> None:
    # Counters are summed per hostname over its workers' hashes (one per worker name: every
    # restart starts one). Dropping a week-old one while another of the host still counts
    # would make the sums go down: a counter reset to Prometheus. It is folded instead.
    settings = cleanup(private_settings(redis_url))
    keys, queue = Keys(settings.queue_key_prefix), settings.queue_name
    now = float(sync_redis.time()[0])  # type: ignore[index]
    old, later, live = "pocketqueue.1@box", "pocketqueue.2@box", "pocketqueue.3@box"
    old_fields = worker_fields(queue, 3, {1: 2, 3: 1}, 1_250_000)
    later_fields = worker_fields(queue, 2, {2: 1, 20: 1}, 4_000_000)
    write_host(sync_redis, keys, old, old_fields, now - 6 * DAY)  # a day short of pruning
    write_host(sync_redis, keys, later, later_fields, now - 6 * DAY)
    write_host(sync_redis, keys, live, worker_fields(queue, 5, {3: 4, 20: 1}, 2_000_500_000), now - 5)
    write_host(sync_redis, keys, "pocketqueue.4@other", worker_fields(queue, 1, {1: 1}, 3_000), now - 5)
    retired = "retired@box"

    async with api_client(settings) as client, api_client(settings) as other:
        before = await scrape(client)
        box, elsewhere = host_series(before, "box"), host_series(before, "other")
        labels = {"name": "t", "hostname": "box", "queue_name": queue}
        assert value(before, "celery_task_succeeded_total", **labels) == 10
        assert value(before, "celery_task_runtime_count", **labels) == 10
        assert value(before, "pocketqueue_queue_wait_seconds_sum", **labels) == 2005.75
        up = samples(before, "celery_worker_up")

        # The old worker's last write passes a week. Scrapes from two API processes at once:
        # one prunes (folds), each of the others reads before the fold or after it, and
        # every one of them sees the same sums.
        sync_redis.zadd(keys.metrics(), {old: now - 8 * DAY})
        for after in await asyncio.gather(*(scrape(api) for api in [client, other] * 4)):
            assert host_series(after, "box") == box
            assert host_series(after, "other") == elsewhere
            assert samples(after, "celery_worker_up") == up  # the retired hash is no host, up or down
        assert not sync_redis.exists(keys.metrics(old))
        assert sync_redis.zscore(keys.metrics(), old) is None
        assert sync_redis.hgetall(keys.metrics(retired)) == {name: str(n) for name, n in old_fields.items()}
        # Its last write is what it absorbed: over a week old, so never a live host, and left
        # alone while `box` has a live hash.
        assert sync_redis.zscore(keys.metrics(), retired) == now - 8 * DAY
        assert host_series(await scrape(client), "box") == box  # and again: nothing counted twice

        # Another worker of `box` goes stale: added to the same retired hash.
        sync_redis.zadd(keys.metrics(), {later: now - 7.5 * DAY})
        assert host_series(await scrape(other), "box") == box
        assert not sync_redis.exists(keys.metrics(later))
        absorbed = {name: old_fields.get(name, 0) + later_fields.get(name, 0) for name in old_fields | later_fields}
        assert sync_redis.hgetall(keys.metrics(retired)) == {name: str(n) for name, n in absorbed.items()}
        assert sync_redis.zscore(keys.metrics(), retired) == now - 7.5 * DAY  # the newest it absorbed
        again = await scrape(client)
        assert host_series(again, "box") == box
        assert host_series(again, "other") == elsewhere
        assert samples(again, "celery_worker_up") == up


async def test_a_hostname_with_no_live_hash_left_loses_its_series_whole_retired_hash_and_all(
    redis_url: str, sync_redis: redis.Redis, cleanup: Callable[[Settings], Settings]
) -> None:
    # Series that vanish are stale to Prometheus, not reset: a hostname none of whose hashes
    # was written for a week is dropped outright, whatever it had retired.
    settings = cleanup(private_settings(redis_url))
    keys, queue = Keys(settings.queue_key_prefix), settings.queue_name
    now = float(sync_redis.time()[0])  # type: ignore[index]
    lone, old, live = "pocketqueue.1@lone", "pocketqueue.2@box", "pocketqueue.3@box"
    write_host(sync_redis, keys, lone, worker_fields(queue, 2, {1: 2}, 9_000), now - 6 * DAY)
    write_host(sync_redis, keys, old, worker_fields(queue, 3, {2: 3}, 30_000), now - 6 * DAY)
    write_host(sync_redis, keys, live, worker_fields(queue, 1, {4: 1}, 50_000), now - 5)

    async with api_client(settings) as client:
        before = await scrape(client)
        assert host_series(before, "lone")
        box = host_series(before, "box")

        # `lone`'s only hash goes stale: its series go; `box` keeps its sums (retired).
        sync_redis.zadd(keys.metrics(), {lone: now - 8 * DAY, old: now - 8 * DAY})
        after = await scrape(client)
        assert host_series(after, "lone") == set()
        assert not any(s.labels.get("hostname") == "lone" for f in after.values() for s in f.samples)
        assert not sync_redis.exists(keys.metrics(lone))
        assert not sync_redis.exists(keys.metrics("retired@lone"))  # nothing left to keep it for
        assert sync_redis.zscore(keys.metrics(), lone) is None
        assert host_series(after, "box") == box
        assert sync_redis.exists(keys.metrics("retired@box"))

        # Then `box`'s last live hash goes stale too: its retired hash goes with it.
        sync_redis.zadd(keys.metrics(), {live: now - 7.5 * DAY})
        gone = await scrape(client)
        assert not any(s.labels.get("hostname") in ("box", "lone") for f in gone.values() for s in f.samples)
        for worker in (old, live, "retired@box"):
            assert not sync_redis.exists(keys.metrics(worker)), worker
        assert sync_redis.zrange(keys.metrics(), 0, -1) == []
        assert host_series(await scrape(client), "box") == set()


async def test_a_worker_whose_consumer_is_cancelled_counts_in_workers_stalled(
    redis_url: str, cleanup: Callable[[Settings], Settings], start_worker: StartWorker
) -> None:
    settings = cleanup(private_settings(redis_url, queue_recovery_seconds=4))
    worker = start_worker(settings)
    async with api_client(settings) as client:
        seen = await eventually(lambda: listed(client, worker), timeout=heartbeat_bound(settings))
        host = seen["name"].partition("@")[2]
        assert value(await scrape(client), "pocketqueue_workers_stalled") == 0
        out = celery_control(settings, "cancel_consumer", settings.queue_name, "-d", seen["name"])
        assert "no longer consuming" in out, out
        job_id = await dispatch(client, "tests.add", args=[2, 2])  # waits: no worker consumes the queue

        async def stalled(count: int) -> Families | None:
            families = await scrape(client)
            return families if value(families, "pocketqueue_workers_stalled") == count else None

        families = await poll(lambda: stalled(1), timeout=stall_seconds(settings) + heartbeat_bound(settings) + 1)
        assert value(families, "celery_worker_up", hostname=host) == 1  # stalled, not down
        assert value(families, "celery_queue_length", queue_name=settings.queue_name) == 1

        # Consuming again: the job runs and the gauge is back to 0.
        celery_control(settings, "add_consumer", settings.queue_name, "-d", seen["name"])
        assert (await wait(client, job_id))["status"] == "completed"
        await poll(lambda: stalled(0), timeout=heartbeat_bound(settings) + 1)


async def test_a_job_whose_worker_was_killed_counts_in_recovered_total(
    redis_url: str, sync_redis: redis.Redis, cleanup: Callable[[Settings], Settings], start_worker: StartWorker
) -> None:
    settings = cleanup(private_settings(redis_url, queue_recovery_seconds=4))
    runs_key = f"{settings.queue_key_prefix}:runs"
    worker = start_worker(settings)
    async with api_client(settings) as client:
        job_id = await dispatch(
            client, "tests.runs", args=[runs_key], kwargs={"sleep": 2, "result": "recovered"}, max_retries=1
        )

        async def running() -> bool:
            return runs_of(sync_redis, runs_key) == [f"{job_id}:1"]

        await poll(running)
        host = (await client.get(f"/api/queue/status/{job_id}")).json()["worker"].partition("@")[2]
        assert host
        assert (await scrape(client))["pocketqueue_recovered"].samples == []
        kill_whole_worker(worker)  # mid-job: its lease lapses, the janitor of the next worker recovers it
        start_worker(settings)
        job = await wait(client, job_id)
        assert (job["status"], job["result"], job["attempts"]) == ("completed", "recovered", 2)

        families = await scrape(client)
        # Counted once, by the janitor (hostname "", as the API's own counts).
        labels = {"name": "tests.runs", "queue_name": settings.queue_name}
        assert value(families, "pocketqueue_recovered_total", hostname="", **labels) == 1
        assert [s.labels["hostname"] for s in families["pocketqueue_recovered"].samples] == [""]
        # Both attempts started on the same host, by two workers (two hashes): one hostname.
        assert value(families, "celery_task_started_total", hostname=host, **labels) == 2
        assert value(families, "celery_task_succeeded_total", hostname=host, **labels) == 1


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
