"""Batches: jobs dispatched as children of one batch, fanned in to one callback.

Real workers, real Redis. The fan-in counter lives in the Lua step that ends each child;
the last test SIGKILLs a worker while children finish and restarts Redis in between, and
the callback still runs exactly once with every child counted once.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from conftest import WorkerProcess, api_client, make_settings, wait_until
from pocketqueue import Client
from pocketqueue.config import Settings
from pocketqueue.embedded import LocalRedis
from pocketqueue.flows import create_batch_and_wait_flow
from pocketqueue.jobs.keys import Keys
from pocketqueue.jobs.models import JobStatus
from pocketqueue.jobs.request import DispatchRequest
from pocketqueue.pipelines.batches import Batch, BatchRequest
from pocketqueue.runtime import open_runtime

StartWorker = Callable[..., WorkerProcess]
MODULES = ["pq_test_tasks", "pq_flow_tasks"]


@pytest.fixture
def batch_settings(redis_url: str) -> Settings:
    return make_settings(redis_url, uuid.uuid4().hex[:8], task_modules=MODULES)


def settled(client: Client, batch_id: str, timeout: float = 30) -> Batch:
    """The batch once it ended and (if it has one) its callback was dispatched."""

    def done() -> Batch | None:
        batch = client.batch(batch_id)
        ended = batch.state != "running" and (batch.on_complete is None or batch.on_complete_job is not None)
        return batch if ended else None

    found: Batch = wait_until(done, timeout=timeout)
    return found


async def test_a_batch_over_http_fans_in_to_one_callback_with_every_result(
    batch_settings: Settings, start_worker: StartWorker
) -> None:
    start_worker(batch_settings)
    body = {
        "jobs": [{"task": "tests.add", "args": [n, n]} for n in range(5)],
        "on_complete": {"task": "tests.batch.collect", "tags": {"stage": "join"}},
    }
    async with api_client(batch_settings) as http:
        accepted = await http.post("/api/queue/batches", json=body)
        assert accepted.status_code == 202, accepted.text
        created = accepted.json()
        assert (created["state"], created["total"], created["done"], len(created["jobs"])) == ("running", 5, 0, 5)
        client = Client(batch_settings)
        batch = settled(client, created["batch_id"])
        shown = (await http.get(f"/api/queue/batches/{batch.batch_id}")).json()
        missing = await http.get(f"/api/queue/batches/{uuid.uuid4()}")
    assert (shown["state"], shown["done"], shown["counts"]) == ("completed", 5, {"completed": 5})
    assert missing.status_code == 404
    assert missing.json()["type"].endswith("batch-not-found")
    callback = client.handle(shown["on_complete_job"]).result(timeout=20)
    assert callback["batch_id"] == batch.batch_id
    assert callback["results_included"] is True
    assert callback["counts"] == {"completed": 5}
    results = {job_id: entry["result"] for job_id, entry in callback["jobs"].items()}
    assert sorted(r["sum"] for r in results.values()) == [0, 2, 4, 6, 8]
    assert set(results) == set(shown["jobs"])
    child = client.get_or_raise(shown["jobs"][0])
    assert child.batch == batch.batch_id
    assert client.get_or_raise(shown["on_complete_job"]).tags == {"stage": "join"}


async def test_a_pipeline_fans_out_and_in_with_the_batch_nodes(
    batch_settings: Settings, start_worker: StartWorker
) -> None:
    start_worker(batch_settings)
    request = BatchRequest([DispatchRequest("tests.add", [n, 1]) for n in range(3)])
    async with open_runtime(batch_settings) as runtime:
        shared: dict[str, Any] = {"runtime": runtime, "batch_request": request, "wait_timeout": 30}
        assert await create_batch_and_wait_flow().run_async(shared) == "ended"
    batch: Batch = shared["batch"]
    assert (batch.state, batch.counts) == ("completed", {"completed": 3})


def test_policy_continue_counts_a_failed_child_and_still_calls_back(
    batch_settings: Settings, start_worker: StartWorker
) -> None:
    start_worker(batch_settings)
    client = Client(batch_settings)
    jobs = [
        {"task": "tests.add", "args": [1, 2]},
        {"task": "tests.fail", "args": ["no"]},
        {"task": "tests.add", "args": [3, 4]},
    ]
    batch = settled(client, client.dispatch_batch(jobs, on_complete={"task": "tests.batch.collect"}).batch_id)
    assert (batch.state, batch.counts) == ("completed", {"completed": 2, "failed": 1})
    assert batch.on_complete_job is not None
    outcome = client.handle(batch.on_complete_job).result(timeout=20)
    assert sorted(entry["status"] for entry in outcome["jobs"].values()) == ["completed", "completed", "failed"]


def test_policy_fail_fast_fails_the_batch_cancels_the_rest_and_skips_the_callback(
    batch_settings: Settings, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    start_worker(batch_settings)
    client = Client(batch_settings)
    key = f"pqtest-batch-{uuid.uuid4().hex[:8]}"
    slow = [{"task": "tests.runs", "args": [key], "kwargs": {"sleep": 30}} for _ in range(3)]
    created = client.dispatch_batch(
        [{"task": "tests.fail", "args": ["boom"], "priority": "low"}, *slow],
        on_complete={"task": "tests.batch.collect"},
        policy="fail_fast",
    )
    batch = wait_until(lambda: (b := client.batch(created.batch_id)).done == 4 and b, timeout=30)
    assert batch.state == "failed"
    assert batch.counts == {"failed": 1, "cancelled": 3}
    assert batch.on_complete_job is None
    statuses = [client.get_or_raise(job_id).status for job_id in batch.jobs]
    assert sorted(statuses) == sorted([JobStatus.FAILED] + [JobStatus.CANCELLED] * 3)


async def test_a_batch_that_cannot_run_is_refused_whole(batch_settings: Settings, sync_redis: redis.Redis) -> None:
    keys = Keys(batch_settings.queue_key_prefix)
    async with api_client(batch_settings) as http:
        unknown = await http.post(
            "/api/queue/batches", json={"jobs": [{"task": "tests.add", "args": [1, 2]}, {"task": "no.such.task"}]}
        )
        keyed = await http.post(
            "/api/queue/batches", json={"jobs": [{"task": "tests.add", "args": [1, 2], "unique_key": "u"}]}
        )
        bad_callback = await http.post(
            "/api/queue/batches",
            json={"jobs": [{"task": "tests.add", "args": [1, 2]}], "on_complete": {"task": "tests.add"}},
        )
        empty = await http.post("/api/queue/batches", json={"jobs": []})
    assert unknown.status_code == 404
    assert unknown.json()["type"].endswith("task-not-registered")
    assert keyed.status_code == 422
    assert "no idempotency_key or unique_key" in keyed.json()["detail"]
    assert bad_callback.status_code == 422  # tests.add takes no `batch` argument
    assert empty.status_code == 422
    assert not list(sync_redis.scan_iter(f"{keys.prefix}:batch:*"))
    assert not list(sync_redis.scan_iter(f"{keys.prefix}:job:*"))  # nothing half-written


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    """A Redis (AOF on) this test may restart."""
    server = LocalRedis(tmp_path / "redis", write_port_file=False)
    server.start()
    yield server
    server.stop()


def test_the_callback_runs_exactly_once_under_worker_kills_and_a_redis_restart(
    own_redis: LocalRedis, start_worker: StartWorker
) -> None:
    settings = make_settings(own_redis.url, uuid.uuid4().hex[:8], task_modules=MODULES)
    client = Client(settings)
    doomed, _ = start_worker(settings), start_worker(settings)
    runs, calls = f"runs-{uuid.uuid4().hex[:8]}", f"calls-{uuid.uuid4().hex[:8]}"
    children = [{"task": "tests.runs", "args": [runs], "kwargs": {"sleep": 0.2}, "max_retries": 3} for _ in range(40)]
    created = client.dispatch_batch(children, on_complete={"task": "tests.batch.collect", "kwargs": {"log": calls}})
    wait_until(lambda: client.batch(created.batch_id).done >= 8, timeout=30)

    def doomed_is_running_a_child() -> bool:
        running = client.list(task="tests.runs", status=[JobStatus.PROCESSING]).jobs
        return any((job.worker or "").startswith(doomed.name) for job in running)

    # Mid-job, checked rather than assumed (on a busy machine it can be between jobs): its
    # children are recovered and run again.
    wait_until(doomed_is_running_a_child, timeout=30, interval=0.01)
    os.killpg(doomed.process.pid, signal.SIGKILL)
    doomed.process.wait()
    start_worker(settings)
    wait_until(lambda: client.batch(created.batch_id).done >= 20, timeout=60)
    client.close()
    own_redis.stop()  # the counts so far must survive the restart (AOF)
    own_redis.start()
    batch = settled(client, created.batch_id, timeout=90)
    assert (batch.state, batch.done, batch.counts) == ("completed", 40, {"completed": 40})
    assert batch.on_complete_job is not None
    outcome: dict[str, Any] = client.handle(batch.on_complete_job).result(timeout=30)
    assert len(outcome["jobs"]) == 40
    assert {entry["status"] for entry in outcome["jobs"].values()} == {"completed"}
    # One callback job, run once; give a late second dispatch time to show (a janitor tick or two).
    page = client.list(task="tests.batch.collect")
    assert [job.job_id for job in page.jobs] == [batch.on_complete_job]
    ran = redis.Redis.from_url(own_redis.url, decode_responses=True)
    assert ran.lrange(calls, 0, -1) == [batch.on_complete_job]
    # The kill hit children mid-run: they ran again (attempt 2), and were still counted once.
    attempts = [entry.rsplit(":", 1)[1] for entry in ran.lrange(runs, 0, -1)]
    assert "2" in attempts, attempts


def test_a_flow_job_fans_out_and_its_continuation_fans_in_without_holding_a_worker(
    batch_settings: Settings, start_worker: StartWorker
) -> None:
    # The documented alternative to parking: the flow ends at the fan-out, and the batch's
    # callback is the flow that continues, seeded with the batch's outcome.
    start_worker(batch_settings)
    client = Client(batch_settings)
    first = client.dispatch("tests.flow.fan_out", kwargs={"numbers": [1, 2, 3]}).result(timeout=30)
    batch = settled(client, first["batch_id"])
    assert batch.on_complete == "tests.flow.fan_in"
    assert batch.on_complete_job is not None
    assert client.handle(batch.on_complete_job).result(timeout=30) == {"total": 12}
