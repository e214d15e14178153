"""Fixtures: a real Redis, a real Celery worker process, and the API in-process.

Redis is an embedded redis-server on a free port, or TEST_REDIS_URL when set. Each test
session uses its own queue name and key prefix, so a shared TEST_REDIS_URL is safe.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from pocketqueue.api.app import create_app
from pocketqueue.config import Settings
from pocketqueue.embedded import LocalRedis, free_port
from pocketqueue.runtime import QueueRuntime, open_runtime
from pocketqueue.worker.app import create_celery_app

TESTS = Path(__file__).parent
TASK_MODULES_DIR = TESTS / "task_modules"
sys.path.insert(0, str(TASK_MODULES_DIR))  # the API side imports the same module


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("TEST_REDIS_URL")
    if external:
        yield external
        return
    with LocalRedis(tmp_path_factory.mktemp("redis"), write_port_file=False) as server:
        yield server.url


@pytest.fixture(scope="session")
def session_id() -> str:
    return uuid.uuid4().hex[:8]


def make_settings(redis_url: str, session_id: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "queue_name": f"pqtest-{session_id}",
        "queue_key_prefix": f"pqtest-{session_id}",
        "task_modules": ["pq_test_tasks", "pq_client_tasks"],
        "queue_recovery_seconds": 6,  # 3 s leases, a janitor sweep every 0.5 s
        "queue_max_retries": 0,  # tests about retries ask for them
        "queue_retry_delays": [0.3, 0.6],
        "worker_concurrency": 2,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def settings(redis_url: str, session_id: str) -> Settings:
    return make_settings(redis_url, session_id)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process the same settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUEUE_", "CELERY_", "REDIS_"))}
    env.update(
        REDIS_URL=settings.resolved_redis_url(),
        QUEUE_NAME=settings.queue_name,
        WORKER_QUEUES=",".join(settings.worker_queues),
        QUEUE_KEY_PREFIX=settings.queue_key_prefix,
        TASK_MODULES=",".join(settings.task_modules),
        QUEUE_RECOVERY_SECONDS=str(settings.queue_recovery_seconds),
        QUEUE_MAX_RETRIES=str(settings.queue_max_retries),
        QUEUE_RETRY_DELAYS=",".join(map(str, settings.queue_retry_delays)),
        QUEUE_SHUTDOWN_GRACE_SECONDS=str(settings.queue_shutdown_grace_seconds),
        QUEUE_DEAD_LETTER_TTL_SECONDS=str(settings.queue_dead_letter_ttl_seconds),
        QUEUE_TASK_TIME_LIMIT=str(settings.queue_task_time_limit),
        QUEUE_TASK_SOFT_TIME_LIMIT=str(settings.queue_task_soft_time_limit),
        WORKER_CONCURRENCY=str(settings.worker_concurrency),
        QUEUE_MAX_DELIVERIES=str(settings.queue_max_deliveries),
        QUEUE_UNKNOWN_TASK_SECONDS=str(settings.queue_unknown_task_seconds),
        QUEUE_MAX_JSON_DEPTH=str(settings.queue_max_json_depth),
        QUEUE_MAX_RESULT_BYTES=str(settings.queue_max_result_bytes),
        QUEUE_TASK_EVENTS=str(settings.queue_task_events).lower(),
        PYTHONPATH=os.pathsep.join([str(TASK_MODULES_DIR), env.get("PYTHONPATH", "")]),
        LOG_LEVEL="INFO",
    )
    return env


def terminate(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it is still there after `timeout` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class WorkerProcess:
    """A real `python -m pocketqueue worker` child process."""

    def __init__(self, settings: Settings, log_path: Path, args: Sequence[str] = ()) -> None:
        self.settings = settings
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pocketqueue", "worker", *args],
            env=settings_env(settings),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.name = f"pocketqueue.{self.process.pid}@"

    def wait_ready(self, timeout: float = 30.0) -> None:
        app = create_celery_app(self.settings)

        def answered() -> bool:
            assert self.process.poll() is None, f"worker exited early:\n{self.log()}"
            replies = app.control.ping(timeout=0.5) or []
            return any(name.startswith(self.name) for reply in replies for name in reply)

        wait_until(answered, timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def child_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, check=False)
        return [int(pid) for pid in out.stdout.split()]

    def stop(self) -> None:
        terminate(self.process, timeout=20)
        self._log.close()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers for a test (stopped at its end): `start_worker(settings, *worker_args)`."""
    started: list[WorkerProcess] = []

    def start(settings: Settings, *args: str) -> WorkerProcess:
        worker = WorkerProcess(settings, tmp_path / f"worker-{len(started)}.log", args)
        started.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()


class ApiProcess:
    """A real `python -m pocketqueue api` child on a free loopback port; `env` adds settings."""

    def __init__(self, settings: Settings, log_path: Path, **env: str) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log_path = log_path
        port = self.url.rsplit(":", 1)[1]
        child_env = {**settings_env(settings), "API_HOST": "127.0.0.1", "API_PORT": port, "LOG_LEVEL": "WARNING"}
        with log_path.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pocketqueue", "api"], env={**child_env, **env}, stdout=out, stderr=out
            )

    def wait_ready(self, timeout: float = 30.0) -> None:
        # /openapi.json needs no key, whatever the settings.
        def answered() -> bool:
            assert self.process.poll() is None, f"the API exited:\n{self.log_path.read_text()}"
            try:
                return httpx.get(f"{self.url}/openapi.json", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(answered, timeout, interval=0.1)

    def stop(self) -> None:
        terminate(self.process)


@pytest.fixture
def start_api(tmp_path: Path) -> Iterator[Callable[..., ApiProcess]]:
    """Start API processes for a test (stopped at its end): `start_api(settings, **env)`."""
    started: list[ApiProcess] = []

    def start(settings: Settings, **env: str) -> ApiProcess:
        api = ApiProcess(settings, tmp_path / f"api-{len(started)}.log", **env)
        started.append(api)
        api.wait_ready()
        return api

    yield start
    for api in started:
        api.stop()


@pytest.fixture(scope="session")
def worker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """The session's worker, consuming the session queue."""
    process = WorkerProcess(settings, tmp_path_factory.mktemp("worker") / "worker.log")
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[QueueRuntime]:
    async with open_runtime(settings) as opened:
        yield opened


@asynccontextmanager
async def api_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API on `settings`, in-process, with its lifespan (Redis pool, watcher) running."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://pq") as c:
        yield c


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API on the session's settings."""
    async with api_client(settings) as c:
        yield c
