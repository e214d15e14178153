"""In-process dispatch: `.delay()` from one Python thread, no worker running.

Ours (a `@task` no-op's `.delay()`, through the process's default Client) against
Celery's `task.delay()` (the plain app of plain_celery.py, with its Redis result backend
and without one) and RQ's `Queue.enqueue()`, all on the same Redis. Runs in a child
process whose environment holds the settings, as a user's script would.

    .venv/bin/python bench/run.py --only delay     # a phase of the benchmark
    .venv/bin/python bench/delay.py --profile      # cProfile of ours, on a Redis of its own

Each round sends a run of N jobs through every system in turn (interleaved, so load on a
noisy machine hits them alike), after one warm-up run each.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent

# Measured in this order each round.
SYSTEMS = ("pocketqueue", "celery", "celery_no_backend", "rq")
LABELS = {
    "pocketqueue": "PocketQueue `task.delay()`",
    "celery": "Celery `task.delay()`, Redis result backend",
    "celery_no_backend": "Celery `task.delay()`, no result backend",
    "rq": "RQ `Queue.enqueue(func)`",
}
RQ_QUEUE = "bench-rq"
CHILD_TIMEOUT_SECONDS = 600.0

Sender = Callable[[int], None]


def measure(env: dict[str, str], cwd: Path, jobs: int, runs: int) -> dict[str, dict[str, list[float]]]:
    """Per system, each run's jobs/s ("rates") and Redis's CPU time per job in us ("redis_us"),
    measured in a child process with `env`."""
    argv = [sys.executable, str(Path(__file__)), "--child", "--jobs", str(jobs), "--runs", str(runs)]
    done = subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=CHILD_TIMEOUT_SECONDS, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"delay benchmark failed ({done.returncode}):\n{done.stderr[-4000:]}")
    found: dict[str, dict[str, list[float]]] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


@contextmanager
def senders(url: str) -> Iterator[dict[str, Sender]]:
    """A function per system that sends `count` no-op jobs, one call each, as users write it."""
    import redis
    from rq import Queue

    from bench_tasks import noop, rq_noop
    from plain_celery import NOOP, make_app

    with_backend = make_app(url)
    no_backend = make_app(url)
    no_backend.conf.result_backend = None  # before first use: Celery reads it lazily
    celery_task, bare_task = with_backend.tasks[NOOP], no_backend.tasks[NOOP]
    connection = redis.Redis.from_url(url)
    queue = Queue(RQ_QUEUE, connection=connection)

    def pocketqueue(count: int) -> None:
        for _ in range(count):
            noop.delay()

    def celery(count: int) -> None:
        for _ in range(count):
            celery_task.delay()

    def celery_no_backend(count: int) -> None:
        for _ in range(count):
            bare_task.delay()

    def rq(count: int) -> None:
        for _ in range(count):
            queue.enqueue(rq_noop)

    try:
        yield {"pocketqueue": pocketqueue, "celery": celery, "celery_no_backend": celery_no_backend, "rq": rq}
    finally:
        with_backend.close()
        no_backend.close()
        connection.close()


def rate(send: Sender, count: int) -> float:
    started = time.perf_counter()
    send(count)
    return count / (time.perf_counter() - started)


def child(jobs: int, runs: int) -> dict[str, dict[str, list[float]]]:
    url = os.environ["REDIS_URL"]
    found: dict[str, dict[str, list[float]]] = {name: {"rates": [], "redis_us": []} for name in SYSTEMS}
    with senders(url) as send:
        for name in SYSTEMS:
            rate(send[name], min(jobs, 1_000))  # warm-up: connections, scripts, imports done lazily
        for _ in range(runs):
            for name in SYSTEMS:
                server_side = redis_seconds(url)
                found[name]["rates"].append(rate(send[name], jobs))
                found[name]["redis_us"].append((redis_seconds(url) - server_side) / jobs * 1e6)
    return found


def profile(jobs: int, top: int) -> None:
    """cProfile of `jobs` PocketQueue `.delay()` calls, on a Redis this starts and stops."""
    with ExitStack() as stack:
        work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pocketqueue-delay-")))
        from pocketqueue.embedded import LocalRedis

        server = LocalRedis(work_dir, write_port_file=False)
        stack.callback(server.stop)
        os.environ.update(REDIS_URL=server.start(), DATA_DIR=str(work_dir / "var"))
        with senders(os.environ["REDIS_URL"]) as send:
            rate(send["pocketqueue"], 1_000)
            server_side = redis_seconds(os.environ["REDIS_URL"])
            profiler = cProfile.Profile()
            profiler.enable()
            achieved = rate(send["pocketqueue"], jobs)
            profiler.disable()
            server_side = redis_seconds(os.environ["REDIS_URL"]) - server_side
            print(f"{jobs:,} PocketQueue .delay() calls: {achieved:,.0f} jobs/s under the profiler")
            print(f"Redis's main thread used {server_side / jobs * 1e6:.0f} us of CPU per call (INFO cpu)")
            stats = pstats.Stats(profiler, stream=sys.stdout).strip_dirs()
            stats.sort_stats("cumulative").print_stats(top)
            stats.sort_stats("tottime").print_stats(top)


def redis_seconds(url: str) -> float:
    """CPU seconds Redis's main thread has used so far: commands, scripts, network and AOF writes.

    Not INFO commandstats: it counts a script's commands twice (inside EVALSHA and on their own).
    """
    import redis

    with redis.Redis.from_url(url) as client:
        cpu = client.info("cpu")
    return float(cpu["used_cpu_user_main_thread"]) + float(cpu["used_cpu_sys_main_thread"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=5_000, help="jobs per run (default 5000)")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per system (default 3)")
    parser.add_argument("--child", action="store_true", help="measure on REDIS_URL and print JSON (run.py uses it)")
    parser.add_argument("--profile", action="store_true", help="profile PocketQueue's .delay() instead")
    parser.add_argument("--top", type=int, default=35, help="functions shown per profile listing")
    args = parser.parse_args(argv)
    if args.profile:
        profile(args.jobs, args.top)
        return 0
    if not args.child:
        parser.error("run it through run.py (--only delay), or with --profile")
    print(json.dumps(child(args.jobs, args.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
