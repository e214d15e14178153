"""Named queues: a job runs only on a worker consuming its queue, with every guarantee per queue.

Two real workers share one deployment (key prefix): A consumes two named queues (given
with `worker --queues`), B only the default queue. Jobs wait before either starts, so
the order each queue hands them out in is its priority order.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import redis
from pq_client_tasks import ROUTED_QUEUE

from conftest import WorkerProcess, api_client, wait_until
from pocketqueue import Client
from pocketqueue.config import Settings
from pocketqueue.jobs.keys import queue_list
from pocketqueue.jobs.models import Job, Priority
from pocketqueue.worker.app import create_celery_app
from test_lifecycle import private_settings

StartWorker = Callable[..., WorkerProcess]


async def test_jobs_run_only_where_their_queue_is_consumed(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    settings = private_settings(redis_url, worker_concurrency=1)
    videos = f"videos-{uuid.uuid4().hex[:6]}"
    client = Client(settings)

    def where(**options: Any) -> str:
        return client.dispatch("tests.client.where", **options).job_id

    low = [where(queue=videos, priority="low") for _ in range(2)]
    high = where(queue=videos, priority="high")
    lost = where(queue=videos)  # normal priority: its message is deleted below
    routed = client.dispatch("tests.client.routed").job_id  # the task's own queue=
    default = [where() for _ in range(2)]
    sync_redis.delete(queue_list(videos, Priority.NORMAL.broker_priority))  # purged: the janitor republishes it

    b = start_worker(settings)  # QUEUE_NAME only
    wait_until(lambda: all(_job(client, job_id).status.value == "completed" for job_id in default), timeout=30)
    assert {_job(client, job_id).status.value for job_id in [*low, high, lost, routed]} == {"queued"}
    a = start_worker(settings, "--queues", f"{videos},{ROUTED_QUEUE}")

    named = [*low, high, lost, routed]
    wait_until(lambda: all(_job(client, job_id).status.value == "completed" for job_id in named), timeout=30)
    assert {_job(client, job_id).worker.split("@")[0] + "@" for job_id in named} == {a.name}
    assert {_job(client, job_id).worker.split("@")[0] + "@" for job_id in default} == {b.name}
    assert [_job(client, job_id).queue for job_id in [high, routed, default[0]]] == [
        videos,
        ROUTED_QUEUE,
        settings.queue_name,
    ]
    # Within the queue, high went first (all three were waiting when A started).
    started = {job_id: _job(client, job_id).started_at for job_id in [*low, high]}
    assert min(started, key=lambda job_id: started[job_id] or 0) == high

    async with api_client(settings) as http:
        workers = {w["name"].split("@")[0] + "@": w for w in (await http.get("/api/queue/workers")).json()["workers"]}
        stats = (await http.get("/api/queue/stats")).json()
    assert sorted(workers[a.name]["queues"]) == sorted([videos, ROUTED_QUEUE])
    assert workers[b.name]["queues"] == [settings.queue_name]
    assert {settings.queue_name, videos, ROUTED_QUEUE} <= {queue["name"] for queue in stats["queues"]}
    client.close()


def test_celery_routes_a_task_to_its_queue(settings: Settings) -> None:
    # apply_async/send_task through PocketQueue's Celery app (beat, Flower) goes where .delay() goes.
    app = create_celery_app(settings)
    assert app.amqp.router.route({}, "tests.client.routed")["queue"].name == ROUTED_QUEUE
    assert app.amqp.router.route({}, "tests.add")["queue"].name == settings.queue_name


def _job(client: Client, job_id: str) -> Job:
    job = client.get(job_id)
    assert job is not None
    return job


async def test_http_dispatch_takes_a_queue(client: httpx.AsyncClient) -> None:
    sent = await client.post("/api/queue/dispatch", json={"task": "tests.add", "args": [1, 2], "queue": "http-q"})
    assert sent.status_code == 202, sent.text
    assert sent.json()["queue"] == "http-q"
    routed = await client.post("/api/queue/dispatch", json={"task": "tests.client.routed"})
    assert routed.json()["queue"] == ROUTED_QUEUE  # the task's own queue
    for bad in ("a:b", "a,b", "a b", "", "x" * 101):
        refused = await client.post("/api/queue/dispatch", json={"task": "tests.add", "args": [1, 2], "queue": bad})
        assert refused.status_code == 422, bad
    for job in (sent.json(), routed.json()):
        assert (await client.delete(f"/api/queue/cancel/{job['job_id']}")).status_code == 200
