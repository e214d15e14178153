"""`python -m pocketqueue stats | jobs | inspect | monitor`, run as a user runs them.

Each command is a real subprocess with its settings in the environment, against a real
Redis holding jobs a real worker ran. `monitor` runs in a real terminal: a tmux session
(on its own tmux server socket) whose screen the test reads.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from conftest import WorkerProcess, settings_env, wait_until
from pocketqueue.cli import main
from pocketqueue.config import Settings, get_settings
from pocketqueue.jobs.models import Priority
from pocketqueue.nodes import DispatchRequest
from pocketqueue.runtime import open_runtime
from test_lifecycle import private_settings, submit

StartWorker = Callable[[Settings], WorkerProcess]
EXIT = re.compile(r"^monitor-exit=([0-9]+)$", re.MULTILINE)  # the echo's output, not the line typed


@dataclass
class Seeded:
    """A queue holding known jobs: three completed, one failed, two left queued."""

    settings: Settings
    env: dict[str, str]
    completed: list[str]  # tagged book_id 42, 7, 7; oldest first
    failed: str
    queued_high: str
    queued_low: str


def dispatch(settings: Settings, *requests: DispatchRequest) -> list[str]:
    async def run() -> list[str]:
        async with open_runtime(settings) as runtime:
            return [(await submit(runtime, request)).job_id for request in requests]

    return asyncio.run(run())


def statuses(client: redis.Redis, settings: Settings, job_ids: list[str]) -> list[str]:
    return [str(client.hget(f"{settings.queue_key_prefix}:job:{job_id}", "status")) for job_id in job_ids]


@pytest.fixture(scope="module")
def seeded(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    settings = private_settings(redis_url)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    worker = WorkerProcess(settings, tmp_path_factory.mktemp("terminal") / "worker.log")
    try:
        worker.wait_ready()
        add = [DispatchRequest("tests.add", [], {"a": 1, "b": n}, tags={"book_id": tag}) for n, tag in enumerate("477")]
        add[0].tags["book_id"] = "42"
        completed = dispatch(settings, *add)
        [failed] = dispatch(settings, DispatchRequest("tests.fail", [], {"message": "kaput"}))
        wait_until(lambda: statuses(client, settings, [*completed, failed]) == ["completed"] * 3 + ["failed"])
    finally:
        worker.stop()  # what is queued next stays queued
    high, low = dispatch(
        settings,
        DispatchRequest("tests.add", [], {"a": 1, "b": 1}, priority=Priority.HIGH),
        DispatchRequest("tests.add", [], {"a": 1, "b": 1}, priority=Priority.LOW),
    )
    env = {**settings_env(settings), "COLUMNS": "200", "TASK_MODULES": ""}  # the CLI imports no task modules
    yield Seeded(settings, env, completed, failed, high, low)
    client.close()


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def cli(seeded: Seeded, *args: str) -> Result:
    """The command as a user runs it: a new process, settings from its environment only."""
    done = subprocess.run(
        [sys.executable, "-m", "pocketqueue", *args],
        env=seeded.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).parent,  # no .env here
    )
    return Result(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def run(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Iterator[Callable[..., Result]]:
    """The same command in this process (a process start costs more than the command): same
    entry point, settings from the environment."""
    monkeypatch.chdir(tmp_path)  # no .env file
    for name in list(os.environ):
        if name.startswith(("QUEUE_", "CELERY_", "REDIS_")):
            monkeypatch.delenv(name)
    for name, value in seeded.env.items():
        if name.startswith(("QUEUE_", "REDIS_", "COLUMNS")):
            monkeypatch.setenv(name, value)
    get_settings.cache_clear()

    def run(*args: str) -> Result:
        code = main(list(args))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    yield run
    get_settings.cache_clear()


def job_ids(run: Callable[..., Result], *args: str) -> list[str]:
    done = run("jobs", "--json", *args)
    assert done.returncode == 0, done.stderr
    return [job["job_id"] for job in json.loads(done.stdout)["jobs"]]


def cells(output: str, first: str) -> list[str]:
    """The cells of the table row that starts with `first`."""
    line = next(line for line in output.splitlines() if re.match(rf"^│\s*{re.escape(first)}\s*│", line))
    return [cell.strip() for cell in line.strip("│").split("│")]


def test_stats_prints_exact_numbers_as_json_and_as_a_table(seeded: Seeded) -> None:
    done = cli(seeded, "stats", "--json")
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    queue = stats["queues"][0]
    assert (queue["depth"], queue["waiting"], queue["scheduled"]) == ({"high": 1, "normal": 0, "low": 1}, 2, 0)
    counts = {name: stats["statuses"][name] for name in ("queued", "completed", "failed", "processing")}
    assert counts == {"queued": 2, "completed": 3, "failed": 1, "processing": 0}
    assert stats["dead_letters"] == 1
    assert stats["throughput"][0]["finished"] == {"completed": 3, "partial": 0, "failed": 1, "cancelled": 0}
    # Found from the counters although the CLI registered no tasks.
    runtimes = {row["task"]: row["samples"] for row in stats["runtimes"]}
    assert runtimes == {"tests.add": 3, "tests.fail": 1}

    table = cli(seeded, "stats")
    assert table.returncode == 0, table.stderr
    name = seeded.settings.queue_name
    assert cells(table.stdout, name)[:7] == [name, "1", "0", "1", "2", "0", "0"]
    assert cells(table.stdout, "tests.add")[:2] == ["tests.add", "3"]
    one_minute = cells(table.stdout, "1 min")  # per status: the rate, then the count
    assert (one_minute[2], one_minute[4], one_minute[6], one_minute[8]) == ("3", "0", "1", "0")
    assert "Dead letters: 1" in table.stdout


def test_jobs_filters_combine_like_the_api(seeded: Seeded, run: Callable[..., Result]) -> None:
    oldest, middle, newest = seeded.completed
    assert job_ids(run, "--status", "completed") == [newest, middle, oldest]
    assert job_ids(run, "--status", "failed", "--status", "queued") == [
        seeded.queued_low,
        seeded.queued_high,
        seeded.failed,
    ]
    assert job_ids(run, "--task", "tests.fail") == [seeded.failed]
    assert job_ids(run, "--tag", "book_id:7") == [newest, middle]
    assert job_ids(run, "--tag", "book_id:7", "--tag", "book_id:42") == []
    assert job_ids(run, "--tag", "book_id:7", "--status", "queued") == []
    assert job_ids(run, "-q", oldest[:12]) == [oldest]

    record = redis.Redis.from_url(seeded.env["REDIS_URL"], decode_responses=True)
    created = float(str(record.hget(f"{seeded.settings.queue_key_prefix}:job:{middle}", "created_at")))
    record.close()
    assert job_ids(run, "--task", "tests.add", "--status", "completed", "--created-after", str(created)) == [newest]
    assert job_ids(run, "--created-before", str(created)) == [oldest]
    iso = datetime.fromtimestamp(created, UTC).replace(tzinfo=None).isoformat()  # no offset: UTC
    assert job_ids(run, "--created-before", iso) == [oldest]

    first = run("jobs", "--json", "--limit", "4")
    page = json.loads(first.stdout)
    assert len(page["jobs"]) == 4
    assert page["next_cursor"]
    rest = job_ids(run, "--limit", "4", "--cursor", page["next_cursor"])
    seen = [job["job_id"] for job in page["jobs"]] + rest
    assert sorted(seen) == sorted([*seeded.completed, seeded.failed, seeded.queued_high, seeded.queued_low])

    bad = run("jobs", "--tag", "no-colon")
    assert (bad.returncode, bad.stderr.strip()) == (2, "pocketqueue: error: --tag 'no-colon' must be name:value")
    bad = run("jobs", "--limit", "501")
    assert (bad.returncode, bad.stderr.strip()) == (2, "pocketqueue: error: limit must be from 1 to 500")

    table = cli(seeded, "jobs", "--tag", "book_id:42", "--status", "completed")
    assert table.returncode == 0, table.stderr
    row = cells(table.stdout, oldest)
    assert row[1:4] == ["tests.add", "completed", "normal"]
    assert row[6] == "book_id:42"
    assert table.stdout.strip().endswith("1 job(s)")


def test_inspect_shows_the_record_its_attempts_and_errors(seeded: Seeded, run: Callable[..., Result]) -> None:
    done = cli(seeded, "inspect", seeded.failed)
    assert done.returncode == 0, done.stderr
    assert seeded.failed in done.stdout
    assert cells(done.stdout, "1")[1:] == ["ValueError", "kaput"]  # the failed attempts table
    assert "Last traceback" in done.stdout
    assert "raise ValueError(message)" in done.stdout
    assert re.search(r"status\s+failed", done.stdout)

    record = json.loads(run("inspect", seeded.queued_low, "--json").stdout)
    assert (record["status"], record["queue_position"]) == ("queued", 1)
    assert record["estimated_start_seconds"] > 0  # four jobs finished in the last minutes: there is a rate
    assert re.search(r"in line\s+0 ahead; starts in ~", run("inspect", seeded.queued_high).stdout)

    missing = run("inspect", "no-such-job")
    assert missing.returncode == 1
    assert "no job with id 'no-such-job'" in missing.stdout


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """`tmux(*args)` on a tmux server of this test's own (its own socket), killed at the end."""
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed (the monitor test needs a real terminal): apt-get install tmux")
    socket = f"pqtest-{uuid.uuid4().hex[:8]}"

    def run(*args: str) -> str:
        done = subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True, timeout=10, check=True)
        return done.stdout

    yield run
    subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True, check=False)


def test_monitor_draws_the_queue_live_and_leaves_cleanly_on_ctrl_c(
    redis_url: str, start_worker: StartWorker, tmux: Callable[..., str], tmp_path: Path
) -> None:
    # A short warm shutdown: the worker hands the still-running job back quickly at the end.
    settings = private_settings(redis_url, worker_concurrency=1, queue_shutdown_grace_seconds=1)
    start_worker(settings)
    [running] = dispatch(settings, DispatchRequest("pocketqueue.debug", [], {"sleep": 30, "steps": 30}))
    waiting = dispatch(settings, *[DispatchRequest("tests.add", [], {"a": 1, "b": 2}) for _ in range(3)])
    env = {**settings_env(settings), "TASK_MODULES": "", "PS1": "shell-ready$ "}
    rc = tmp_path / "env.sh"
    rc.write_text("".join(f"export {name}={_quote(value)}\n" for name, value in env.items()))
    tmux("new-session", "-d", "-s", "monitor", "-x", "160", "-y", "48", f"bash --noprofile --rcfile {rc} -i")
    tmux(
        "send-keys",
        "-t",
        "monitor",
        f"cd {tmp_path} && {sys.executable} -m pocketqueue monitor --interval 0.3",
        "Enter",
    )

    def screen() -> str:
        return tmux("capture-pane", "-p", "-t", "monitor")

    def shows_depth_and_progress() -> str | None:
        text = screen()
        depth = re.search(rf"│\s*{settings.queue_name}\s*│\s*0\s*│\s*3\s*│\s*0\s*│\s*3\s*│", text)
        progress = re.search(rf"{running[:8]}.*[━╸╺].*│\s*([1-9][0-9]?)%", text)
        return text if depth and progress and "PocketQueue monitor" in text else None

    try:
        first = wait_until(shows_depth_and_progress, timeout=30, interval=0.2)
    except AssertionError:
        raise AssertionError(f"the monitor never showed the queue; its screen:\n{screen()}") from None
    assert "Workers (1)" in first
    assert "pocketqueue.debug" in first
    percent = int(re.findall(rf"{running[:8]}.*│\s*([0-9]+)%", first)[0])
    # It redraws: the running job's progress moves on the same screen.
    wait_until(lambda: int((re.findall(rf"{running[:8]}.*│\s*([0-9]+)%", screen()) or ["0"])[0]) > percent)

    tmux("send-keys", "-t", "monitor", "C-c")
    tmux("send-keys", "-t", "monitor", "echo monitor-exit=$?", "Enter")
    after = wait_until(lambda: next((text for text in [screen()] if EXIT.search(text)), None), timeout=15)
    assert EXIT.findall(after) == ["0"]
    # The alternate screen is gone: the shell's own lines are back, and no trace of the tables.
    assert "shell-ready$" in after
    assert "PocketQueue monitor" not in after
    assert "Traceback" not in after
    # The depth it showed was real: the three jobs were still queued behind the running one.
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        assert statuses(client, settings, waiting) == ["queued"] * 3


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"
