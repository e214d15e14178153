"""`python -m pocketqueue ...` as a user runs it: the whole system, and clear start-up errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import TASK_MODULES_DIR, wait_until
from pocketqueue.cli import redacted
from pocketqueue.embedded import PORT_FILE, answers, free_port, local_redis_url

REPO = Path(__file__).parents[1]


def clean_env(**values: str) -> dict[str, str]:
    """The user's environment without any PocketQueue settings, plus `values`."""
    prefixes = ("REDIS_", "CELERY_", "QUEUE_", "API_", "DATA_DIR", "TASK_MODULES", "TEST_REDIS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    return {**env, "PYTHONPATH": str(TASK_MODULES_DIR), **values}


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pocketqueue", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("command", ["api", "worker"])
def test_unreachable_redis_url_is_a_one_line_error(command: str, tmp_path: Path) -> None:
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    result = run_cli(command, env=clean_env(REDIS_URL=url), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("pocketqueue: error: cannot reach Redis at redis://:***@127.0.0.1:")
    assert "s3cret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_no_redis_url_and_no_local_redis_tells_how_to_start_one(tmp_path: Path) -> None:
    result = run_cli("worker", env=clean_env(DATA_DIR=str(tmp_path / "var")), cwd=tmp_path)
    assert result.returncode == 2
    assert "python -m pocketqueue redis" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_settings_are_a_one_line_error(tmp_path: Path) -> None:
    result = run_cli("api", env=clean_env(API_PORT="eighty"), cwd=tmp_path)
    assert result.returncode == 2
    assert "API_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_up_runs_redis_worker_and_api_and_stops_them_all_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(API_PORT=str(port), TASK_MODULES="pq_test_tasks", WORKER_CONCURRENCY="1")
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen([sys.executable, "-m", "pocketqueue", "up"], env=env, cwd=tmp_path, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}/api/queue"
    try:

        def healthy_with_a_worker() -> bool:
            assert up.poll() is None, (tmp_path / "up.log").read_text()
            try:
                health = httpx.get(f"{base}/health", timeout=5)
            except httpx.TransportError:
                return False
            return health.status_code == 200 and bool(health.json()["workers"])

        wait_until(healthy_with_a_worker, timeout=60, interval=0.3)
        redis_url = local_redis_url(tmp_path / "var")
        assert redis_url is not None  # DATA_DIR defaults to ./var
        assert (tmp_path / "var" / "redis" / "appendonlydir").exists() or list(
            (tmp_path / "var" / "redis").glob("*.aof")
        )

        job = httpx.post(f"{base}/dispatch", json={"task": "tests.add", "args": [40, 2]}, timeout=5).json()
        done = httpx.get(f"{base}/wait/{job['job_id']}", params={"timeout": 30}, timeout=40).json()
        assert done["result"]["sum"] == 42
        assert "docs" in (tmp_path / "up.log").read_text()

        # The stock celery command finds the same local Redis through DATA_DIR alone.
        ping = subprocess.run(
            [str(Path(sys.executable).parent / "celery"), "-A", "pocketqueue.worker", "inspect", "ping"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ping.returncode == 0, ping.stderr
        assert "pong" in ping.stdout

        children = subprocess.run(["pgrep", "-P", str(up.pid)], capture_output=True, text=True, check=False)
        started = [int(pid) for pid in children.stdout.split()]
        assert len(started) == 3  # redis-server, worker, API

        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=60) == 0
        assert not answers(redis_url)
        assert (tmp_path / "var" / PORT_FILE).exists()  # kept, so a restart reuses the port
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{base}/health", timeout=2)
        assert [pid for pid in started if Path(f"/proc/{pid}").exists()] == []  # nothing left running
    finally:
        if up.poll() is None:
            up.terminate()  # never SIGKILL first: its children would outlive it
            try:
                up.wait(timeout=60)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()
        log.close()


def test_start_worker_script_is_the_worker_command(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    result = subprocess.run(
        [sys.executable, str(REPO / "start_worker.py")],
        env=clean_env(REDIS_URL=url),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "cannot reach Redis" in result.stderr


@pytest.mark.parametrize("command", ["api", "worker"])
def test_a_task_module_that_cannot_be_imported_is_a_one_line_error(
    command: str, tmp_path: Path, redis_url: str
) -> None:
    result = run_cli(command, env=clean_env(REDIS_URL=redis_url, TASK_MODULES="no_such_module_here"), cwd=tmp_path)
    assert result.returncode == 2
    assert "TASK_MODULES: cannot import 'no_such_module_here'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_stopped_local_redis_is_named_with_how_to_start_it(tmp_path: Path) -> None:
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / PORT_FILE).write_text(f"{free_port()}\n")
    result = run_cli("api", env=clean_env(), cwd=tmp_path)
    assert result.returncode == 2
    assert "the local Redis under var/" in result.stderr
    assert "python -m pocketqueue redis" in result.stderr


def test_a_broker_url_other_than_redis_url_stops_start_up(tmp_path: Path, redis_url: str) -> None:
    result = run_cli("worker", env=clean_env(REDIS_URL=redis_url, CELERY_BROKER_URL=redis_url + "9"), cwd=tmp_path)
    assert result.returncode == 2
    assert "CELERY_BROKER_URL must be the same Redis" in result.stderr


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
        ("redis://user:pw@h:1/0", "redis://user:***@h:1/0"),
        ("redis://h:1/0?password=pw&db=2", "redis://h:1/0?password=%2A%2A%2A&db=2"),
        ("redis://h:1/0", "redis://h:1/0"),
    ],
)
def test_urls_in_messages_never_show_a_password(url: str, shown: str) -> None:
    assert redacted(url) == shown


def test_settings_that_contradict_each_other_are_one_clean_line(tmp_path: Path) -> None:
    env = clean_env(QUEUE_JOB_TTL_SECONDS="60", QUEUE_IDEMPOTENCY_TTL_SECONDS="120")
    result = run_cli("api", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(
        "pocketqueue: error: invalid settings: QUEUE_IDEMPOTENCY_TTL_SECONDS must not exceed QUEUE_JOB_TTL_SECONDS"
    ), result.stderr
    assert "Value error" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
