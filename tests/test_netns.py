"""Scale-out across hosts, with the network failing between them.

Redis, the API and the workers each run as a separate host: a Linux network namespace
of their own, joined by one switch (see tests/netns.py for the topology). The test
talks to Redis through its own port on that switch, and to the API through the API's
front link, so it can still ask the API questions while the API's cable to the switch
is pulled. Each test cuts one host's cable for longer than a lease, then plugs it in.

Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and iproute2; skipped where either is missing.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from conftest import make_settings, settings_env, wait_until
from netns import Host, HostProcess, NetnsUnavailable, Network, leftovers
from pocketqueue.config import Settings
from pocketqueue.embedded import redis_server_binary
from pocketqueue.jobs.models import JobStatus
from pocketqueue.worker.janitor import LEAD_SECONDS
from test_crash_recovery import job_of, runs_of
from test_lifecycle import read

REDIS_PORT = 6379  # every host has its own network stack, so fixed ports cannot collide
API_PORT = 8000
REDIS_UNAVAILABLE = "urn:pocketqueue:problem:redis-unavailable"
PROBLEM_JSON = "application/problem+json"


@dataclass
class Worker:
    """A `python -m pocketqueue worker` on a host of its own."""

    host: Host
    process: HostProcess

    @property
    def name(self) -> str:
        # Celery's node name, as the job record's `worker` field holds it (see worker_argv).
        return f"pocketqueue.{self.process.pid}@"

    def log(self) -> str:
        return self.process.log()


@dataclass
class Cluster:
    """Redis, the API and workers on their hosts, with the test's clients to Redis and the API."""

    network: Network
    settings: Settings
    redis: redis.Redis
    api: httpx.Client
    api_process: HostProcess
    workers: list[Worker] = field(default_factory=list)

    def dispatch(self, task: str, *args: Any, max_retries: int = 3, **kwargs: Any) -> str:
        body = {"task": task, "args": list(args), "kwargs": kwargs, "max_retries": max_retries}
        response = self.api.post("/api/queue/dispatch", json=body)
        assert response.status_code == 202, response.text
        job_id: str = response.json()["job_id"]
        return job_id

    def worker_running(self, job_id: str) -> Worker:
        name = read(self.redis, self.settings, job_id).get("worker", "")
        return next(w for w in self.workers if name.startswith(w.name))

    def worker_alive(self, worker: Worker) -> bool:
        """The worker's heartbeat key is there: its janitor reaches Redis."""
        return any(self.redis.scan_iter(f"{self.settings.queue_key_prefix}:worker:{worker.name}*"))


StartCluster = Callable[[int], Cluster]


@pytest.fixture
def network() -> Iterator[Network]:
    """A switch of our own; every process, namespace and link on it is removed afterwards."""
    net = Network()
    try:
        net.create()
    except NetnsUnavailable as exc:
        net.destroy()
        pytest.skip(f"network namespaces unavailable: {exc}")
    except BaseException:
        net.destroy()
        raise
    try:
        yield net
    finally:
        problems = net.destroy()
        assert not problems, problems
        assert not leftovers(net.run), leftovers(net.run)


@pytest.fixture
def start_cluster(network: Network, tmp_path: Path) -> Iterator[StartCluster]:
    """Start Redis, the API and `workers` workers, each on a host of its own."""
    clients: list[redis.Redis | httpx.Client] = []

    def start(workers: int) -> Cluster:
        redis_host = network.add_host("redis")
        api_host = network.add_host("api", front=True)
        worker_hosts = [network.add_host(f"w{n + 1}") for n in range(workers)]

        argv = [redis_server_binary(), "--port", str(REDIS_PORT), "--bind", redis_host.address]
        argv += ["--save", "", "--appendonly", "no", "--protected-mode", "no"]
        network.start(redis_host, argv, {}, tmp_path / "redis.log")
        client = redis.Redis(host=redis_host.address, port=REDIS_PORT, decode_responses=True, socket_timeout=10)
        clients.append(client)
        wait_until(_answers(client), timeout=15)

        url = f"redis://{redis_host.address}:{REDIS_PORT}/0"
        # Short leases (3 s), a janitor sweep every 0.5 s, a quick warm shutdown on teardown.
        settings = make_settings(url, network.run, queue_recovery_seconds=6, queue_shutdown_grace_seconds=1)
        command = [sys.executable, "-m", "pocketqueue"]
        env = settings_env(settings)
        # An open API beyond loopback, on purpose: these tests cut links, not keys.
        api_env = {**env, "API_HOST": str(api_host.front_address), "API_PORT": str(API_PORT)}
        api_env["QUEUE_ALLOW_ANONYMOUS"] = "true"
        api_process = network.start(api_host, [*command, "api"], api_env, tmp_path / "api.log")
        started = [
            Worker(host, network.start(host, [*command, "worker"], env, tmp_path / f"{host.name}.log"))
            for host in worker_hosts
        ]
        # trust_env=False: no proxy from the environment may carry the test's requests elsewhere.
        api = httpx.Client(base_url=f"http://{api_host.front_address}:{API_PORT}", timeout=30, trust_env=False)
        clients.append(api)
        cluster = Cluster(network, settings, client, api, api_process, started)

        def api_ready() -> bool:
            assert api_process.alive(), f"API exited early:\n{api_process.log()}"
            try:
                return api.get("/api/queue/health").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(api_ready, timeout=30, interval=0.2)
        for worker in started:
            wait_until(lambda w=worker: _ready(cluster, w), timeout=30, interval=0.2)  # type: ignore[misc]
        return cluster

    yield start
    for opened in clients:
        opened.close()


def _answers(client: redis.Redis) -> Callable[[], bool]:
    def ping() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    return ping


def _ready(cluster: Cluster, worker: Worker) -> bool:
    assert worker.process.alive(), f"worker on {worker.host.name} exited early:\n{worker.log()}"
    return cluster.worker_alive(worker)


def finished_ids(client: redis.Redis, pubsub: redis.client.PubSub, channel: str) -> list[str]:
    """Every job id published on the finished channel since subscribing (one per accepted outcome)."""
    end = f"end-{uuid.uuid4().hex}"
    client.publish(channel, end)  # read up to this marker, not until some quiet period
    ids: list[str] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=1.0)
        if message is None or message["type"] != "message":
            continue
        if message["data"] == end:
            return ids
        ids.append(str(message["data"]))
    raise AssertionError(f"the end marker never came back on {channel}; got {ids}")


def assert_ran_once_per_attempt(cluster: Cluster, runs_key: str, results: dict[str, Any]) -> None:
    """Each job completed with its result; no attempt ran twice; every earlier attempt was lost."""
    runs = runs_of(cluster.redis, runs_key)
    for job_id, expected in results.items():
        job = job_of(cluster.redis, cluster.settings, job_id)
        assert job.status == JobStatus.COMPLETED, job
        assert job.result == expected, job
        mine = [entry for entry in runs if entry.startswith(f"{job_id}:")]
        assert len(mine) == len(set(mine)), mine  # no attempt ran twice
        assert f"{job_id}:{job.attempts}" in mine, (job, mine)  # the completed attempt ran (once)
        assert [(e.type, e.attempt) for e in job.attempt_errors] == [
            ("WorkerLost", n) for n in range(1, job.attempts)
        ], job.attempt_errors


def test_a_worker_cut_off_mid_job_loses_it_to_the_other_and_its_late_result_is_discarded(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster(2)
    settings, client = cluster.settings, cluster.redis
    runs_key = f"runs-{uuid.uuid4().hex}"
    channel = f"{settings.queue_key_prefix}:finished"
    pubsub = client.pubsub()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
    pubsub.subscribe(channel)
    try:
        main = cluster.dispatch("tests.runs", runs_key, sleep=5, result="main", max_retries=2)
        wait_until(lambda: f"{main}:1" in runs_of(client, runs_key))
        victim = cluster.worker_running(main)
        other = next(w for w in cluster.workers if w is not victim)
        results: dict[str, Any] = {main: "main"}

        def more(first: int, count: int = 3) -> None:
            for n in range(first, first + count):
                results[cluster.dispatch("tests.runs", runs_key, sleep=0.3, result=n)] = n

        more(0)  # just before the cut: the victim may take some of these too
        cluster.network.cut(victim.host)
        cut_at = time.monotonic()
        more(3)  # during the cut: only the other worker can take them

        # The victim's heartbeats stop reaching Redis: its registry entry lapses, its lease
        # lapses, and the other worker's janitor (leading by then: the victim may have led)
        # requeues the job, which the other worker runs as attempt 2.
        wait_until(lambda: not cluster.worker_alive(victim), timeout=settings.lease_seconds + 3)
        takeover_bound = settings.lease_seconds + LEAD_SECONDS + 10
        wait_until(lambda: f"{main}:2" in runs_of(client, runs_key), timeout=takeover_bound)
        taken_over_after = time.monotonic() - cut_at
        running = job_of(client, settings, main)
        assert running.worker is not None
        assert running.worker.startswith(other.name), running
        assert [(e.type, e.attempt) for e in running.attempt_errors] == [("WorkerLost", 1)], running
        # The cable stays out until attempt 2 has finished; by then the victim's attempt 1
        # has ended its 5 s too, and its outcome waits in a socket for the cable.
        wait_until(lambda: read(client, settings, main).get("status") == "completed", timeout=15)
        assert victim.process.alive()  # cut off, not dead

        cluster.network.restore(victim.host)
        cut_for = time.monotonic() - cut_at
        assert cut_for > 2 * settings.lease_seconds
        more(6)  # after the cable is back

        ids = list(results)
        wait_until(lambda: all(read(client, settings, i).get("status") == "completed" for i in ids), timeout=40)
        # The victim's FINISH for attempt 1 reaches Redis now, and is refused.
        refused = f"job {main} finished but its result was discarded: job is completed"
        wait_until(lambda: refused in victim.log(), timeout=45)

        finished = job_of(client, settings, main)
        assert finished.status == JobStatus.COMPLETED, finished
        assert finished.result == "main"
        assert finished.attempts == 2
        assert finished.worker is not None
        assert finished.worker.startswith(other.name), finished
        assert [(e.type, e.attempt) for e in finished.attempt_errors] == [("WorkerLost", 1)]
        assert [r for r in runs_of(client, runs_key) if r.startswith(f"{main}:")] == [f"{main}:1", f"{main}:2"]
        assert_ran_once_per_attempt(cluster, runs_key, results)
        # One accepted outcome per job: the finish script publishes only when it writes one.
        published = finished_ids(client, pubsub, channel)
        assert sorted(published) == sorted(ids), published
        assert not client.zcard(f"{settings.queue_key_prefix}:index:failed")

        # The victim rejoined by itself: its heartbeat is back, and with the other worker
        # gone it takes the next job from the broker.
        wait_until(lambda: cluster.worker_alive(victim), timeout=15)
        other.process.stop()
        last = cluster.dispatch("tests.runs", runs_key, result="victim")
        wait_until(lambda: read(client, settings, last).get("status") == "completed", timeout=20)
        assert read(client, settings, last)["worker"].startswith(victim.name)
        assert job_of(client, settings, last).attempts == 1
        print(f"cut {cut_for:.1f} s; attempt 2 started {taken_over_after:.1f} s after the cut")
    finally:
        pubsub.close()


def outage_requests(job_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """One request to each route that needs Redis: (method, path, httpx keyword arguments)."""
    return [
        ("POST", "/api/queue/dispatch", {"json": {"task": "tests.add", "args": [1, 2]}}),
        ("GET", f"/api/queue/status/{job_id}", {}),
        ("GET", f"/api/queue/wait/{job_id}", {"params": {"timeout": 1}}),
        ("DELETE", f"/api/queue/cancel/{job_id}", {}),
        ("POST", "/api/queue/batch-status", {"json": {"job_ids": [job_id]}}),
        ("GET", "/api/queue/health", {}),
    ]


def test_an_api_cut_off_from_redis_answers_503_and_recovers_by_itself(start_cluster: StartCluster) -> None:
    cluster = start_cluster(1)
    api, api_host = cluster.api, cluster.api_process.host
    earlier = cluster.dispatch("tests.add", 1, 2)
    assert api.get(f"/api/queue/wait/{earlier}", params={"timeout": 20}).json()["result"]["sum"] == 3

    cluster.network.cut(api_host)
    cut_at = time.monotonic()
    took: dict[str, float] = {}
    # Every route, for at least two leases of cut cable (one round if answers are slow).
    while not took or time.monotonic() - cut_at < 2 * cluster.settings.lease_seconds:
        for method, path, kwargs in outage_requests(earlier):
            started = time.monotonic()
            response = api.request(method, path, **kwargs)
            took[f"{method} {path.split('/')[3]}"] = round(time.monotonic() - started, 2)
            assert response.status_code == 503, (method, path, response.text)
            assert response.headers["content-type"] == PROBLEM_JSON
            # A dispatch that got as far as sending its script says its outcome is unknown.
            allowed = {REDIS_UNAVAILABLE, f"{REDIS_UNAVAILABLE[: -len('redis-unavailable')]}dispatch-outcome-unknown"}
            assert response.json()["type"] in allowed, response.json()
            assert response.json()["status"] == 503
    # Bounded by the API's own Redis timeouts (a 10 s read, then two 2 s connects), not hung.
    assert max(took.values()) < 20, took
    cut_for = time.monotonic() - cut_at

    cluster.network.restore(api_host)
    restored_at = time.monotonic()
    wait_until(lambda: api.get(f"/api/queue/status/{earlier}").status_code == 200, timeout=30, interval=0.2)
    recovered_after = time.monotonic() - restored_at
    job_id = cluster.dispatch("tests.add", 3, 4)
    waited = api.get(f"/api/queue/wait/{job_id}", params={"timeout": 20})
    assert waited.status_code == 200, waited.text
    assert waited.json()["status"] == "completed"
    assert waited.json()["result"]["sum"] == 7
    assert api.get("/api/queue/health").status_code == 200
    assert cluster.api_process.alive()  # the same process throughout: nothing restarted it
    print(f"503 latencies {took}; cut {cut_for:.1f} s; answering again {recovered_after:.1f} s after restore")


def job_ids(cluster: Cluster) -> set[str]:
    prefix = f"{cluster.settings.queue_key_prefix}:job:"
    return {key.removeprefix(prefix) for key in cluster.redis.scan_iter(f"{prefix}*")}


def test_a_dispatch_cut_off_mid_write_answers_503_naming_the_job_it_may_have_created(
    start_cluster: StartCluster,
) -> None:
    """The script can reach Redis after the API gave up (the kernel resends it when the link
    returns), so a 503 cannot promise nothing was written: it names the job id instead."""
    cluster = start_cluster(0)  # no worker: a written job stays queued, plain to see
    api, api_host = cluster.api, cluster.api_process.host
    accepted = cluster.dispatch("tests.add", 1, 2)
    # Within a second of that answer the API trusts its last Redis check (RedisConnectionNode
    # max_age) and sends this dispatch's script down the pooled connection, into the cut.
    cluster.network.cut(api_host)
    refused = api.post("/api/queue/dispatch", json={"task": "tests.add", "args": [5, 6]})
    assert refused.status_code == 503, refused.text
    problem = refused.json()
    assert problem["type"] == "urn:pocketqueue:problem:dispatch-outcome-unknown"
    maybe = problem["job_id"]
    assert f"/api/queue/status/{maybe}" in problem["detail"]
    cluster.network.restore(api_host)
    wait_until(lambda: api.get(f"/api/queue/status/{accepted}").status_code == 200, timeout=30, interval=0.2)

    # Whatever lands is the job the 503 named, and the status route tells the caller so.
    watch_until = time.monotonic() + 10
    while time.monotonic() < watch_until:
        assert job_ids(cluster) <= {accepted, maybe}
        time.sleep(0.2)
    status = api.get(f"/api/queue/status/{maybe}")
    assert status.status_code in (200, 404)
    assert (status.status_code == 200) == (maybe in job_ids(cluster))
