"""`python -m pocketqueue up` keeps its children running: a dead one is restarted, a signal stops all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import wait_until
from pocketqueue.embedded import answers, free_port, local_redis_url
from test_cli import clean_env

CELERY = str(Path(sys.executable).parent / "celery")
# What each child's command line contains, as `pgrep -a` shows it.
COMMANDS = {"redis": "redis-server", "worker": "pocketqueue worker", "api": "pocketqueue api"}


@dataclass
class Up:
    """A running `python -m pocketqueue up`, in its own directory with its own local Redis."""

    process: subprocess.Popen[bytes]
    env: dict[str, str]
    cwd: Path
    base: str

    def log(self) -> str:
        return (self.cwd / "up.log").read_text(errors="replace")

    def child_pid(self, name: str) -> int | None:
        out = subprocess.run(["pgrep", "-a", "-P", str(self.process.pid)], capture_output=True, text=True, check=False)
        pids = [int(line.split()[0]) for line in out.stdout.splitlines() if COMMANDS[name] in line]
        assert len(pids) <= 1, out.stdout
        return pids[0] if pids else None

    def health(self, ping: bool = False) -> dict[str, Any]:
        """The API's health; it must answer 200 (Redis up) whenever this is asked."""
        assert self.process.poll() is None, self.log()
        response = httpx.get(f"{self.base}/health", params={"ping": "true"} if ping else {}, timeout=5)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def worker_ready(self, pid: int) -> bool:
        """The worker process `pid` answers Celery's ping (its node name carries its pid)."""
        # The ping, not the registry: a heartbeat key survives a Redis restart (AOF), a ping
        # is answered only over a working broker connection.
        return any(name.startswith(f"pocketqueue.{pid}@") for name in self.health(ping=True)["pinged"])

    def restarted(self, name: str, old_pid: int) -> int:
        """Wait for a new `name` child (another pid) and return its pid; the API answers meanwhile."""

        def new_pid() -> int | None:
            if name != "redis":
                self.health()
            pid = self.child_pid(name)
            return pid if pid not in (None, old_pid) else None

        pid: int = wait_until(new_pid, timeout=20, interval=0.2)
        return pid

    def run_a_job(self) -> None:
        job = httpx.post(
            f"{self.base}/dispatch", json={"task": "pocketqueue.debug", "kwargs": {"result": "hi"}}, timeout=5
        ).json()
        done = httpx.get(f"{self.base}/wait/{job['job_id']}", params={"timeout": 20}, timeout=30).json()
        assert (done["status"], done["result"]) == ("completed", "hi"), done


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    """`up` with a worker ready; terminated (never SIGKILLed first: its children would outlive it) at the end."""
    port = free_port()
    env = clean_env(API_PORT=str(port), TASK_MODULES="pq_test_tasks", WORKER_CONCURRENCY="1")
    with (tmp_path / "up.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "pocketqueue", "up"], env=env, cwd=tmp_path, stdout=log, stderr=log
        )
    running = Up(process, env, tmp_path, f"http://127.0.0.1:{port}/api/queue")
    try:

        def ready() -> bool:
            worker = running.child_pid("worker")
            try:
                return worker is not None and running.worker_ready(worker)
            except httpx.TransportError:
                return False  # the API is still starting

        wait_until(ready, timeout=60, interval=0.3)
        yield running
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_a_killed_worker_is_restarted_while_the_api_keeps_answering(up: Up) -> None:
    old, api = up.child_pid("worker"), up.child_pid("api")
    assert old is not None

    os.kill(old, signal.SIGKILL)
    new = up.restarted("worker", old)
    wait_until(lambda: up.worker_ready(new), timeout=30, interval=0.3)

    assert "pocketqueue up: worker exited with code -9 (signal SIGKILL); restarting in 1 s (restart 1)" in up.log()
    assert up.child_pid("api") == api
    up.run_a_job()


def test_celery_control_shutdown_restarts_the_worker_and_leaves_api_and_redis_up(up: Up) -> None:
    old, api, redis = up.child_pid("worker"), up.child_pid("api"), up.child_pid("redis")
    assert old is not None

    # The stock command finds up's local Redis through DATA_DIR (./var), as an operator's would.
    subprocess.run(
        [CELERY, "-A", "pocketqueue.worker", "control", "shutdown"], env=up.env, cwd=up.cwd, capture_output=True
    )
    new = up.restarted("worker", old)
    wait_until(lambda: up.worker_ready(new), timeout=30, interval=0.3)

    assert "pocketqueue up: worker exited with code 0 (shut down on request" in up.log()
    assert "restarting in 1 s (restart 1)" in up.log()
    assert (up.child_pid("api"), up.child_pid("redis")) == (api, redis)
    up.run_a_job()


def test_a_killed_local_redis_is_restarted_on_its_port_and_the_others_reconnect(up: Up) -> None:
    old, worker, api = up.child_pid("redis"), up.child_pid("worker"), up.child_pid("api")
    assert old is not None
    assert worker is not None
    url = local_redis_url(up.cwd / "var")
    assert url is not None

    os.kill(old, signal.SIGKILL)
    up.restarted("redis", old)
    assert answers(url)  # the same port, so the worker and the API keep their URL

    assert "pocketqueue up: redis exited with code -9 (signal SIGKILL); restarting in 1 s (restart 1)" in up.log()
    assert (up.child_pid("worker"), up.child_pid("api")) == (worker, api)
    wait_until(lambda: up.worker_ready(worker), timeout=30, interval=0.3)
    up.run_a_job()


def test_sigterm_after_a_restart_stops_every_child_and_exits_0(up: Up) -> None:
    old = up.child_pid("worker")
    assert old is not None
    os.kill(old, signal.SIGKILL)
    new = up.restarted("worker", old)
    wait_until(lambda: up.worker_ready(new), timeout=30, interval=0.3)
    url = local_redis_url(up.cwd / "var")
    assert url is not None
    children = [pid for name in COMMANDS if (pid := up.child_pid(name)) is not None]
    pool = subprocess.run(["pgrep", "-P", str(new)], capture_output=True, text=True, check=False).stdout.split()
    assert len(children) == 3  # redis-server, worker, API
    assert pool  # the new worker's prefork pool

    up.process.send_signal(signal.SIGTERM)

    assert up.process.wait(timeout=60) == 0
    left = [pid for pid in [*children, *map(int, pool)] if Path(f"/proc/{pid}").exists()]
    assert left == []
    assert not answers(url)
    assert up.log().count("restarting in") == 1  # no restarts once stopping began
