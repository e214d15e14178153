"""PocketQueue benchmark: PocketQueue side by side with a naive FastAPI + Celery setup.

    .venv/bin/python bench/run.py            # the full run (10-13 min on 2 cores; most is the soak)
    .venv/bin/python bench/run.py --quick    # a ~1.5 minute smoke run; --soak N shortens the soak

Everything runs on this machine against a Redis the run starts itself on a free
loopback port (never an existing one), with the API and worker processes as children;
every process started is stopped at the end, also on Ctrl-C or an error. Measures:

1. dispatch: HTTP dispatch throughput, closed loop, no worker running;
   delay: in-process `.delay()` from one thread vs Celery's `delay` and RQ's `enqueue`;
2. latency: dispatch-to-result, sequential, with a worker running;
3. drain: how fast one worker (concurrency 2) empties a queue of no-op jobs;
   drain-async: the same with an `async def` no-op task, against a sync one;
   drain-flow: a 5-node no-op flow job against a plain no-op (the cost of a stage);
4. soak: the API's memory and stalls over many dispatches.

The markdown report is printed and also written under bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import redis
from pydantic import SecretStr

import delay
import report
import wrk
from loadgen import HttpConnection, LoadGenerator, LoadResult, encode_request
from model import (
    NAIVE_ASYNC_TARGET,
    NAIVE_TARGET,
    PHASES,
    PQ_DISPATCH,
    PQ_KEY_TARGET,
    PQ_TARGET,
    PQ_TASK,
    DelayRun,
    DispatchRun,
    DrainRun,
    Options,
    Results,
    SoakRun,
    Target,
)
from plain_celery import NOOP, make_app
from plain_celery import QUEUE as PLAIN_QUEUE
from pocketqueue import flows
from pocketqueue.config import Settings
from pocketqueue.embedded import LocalRedis, free_port
from pocketqueue.jobs.keys import Keys, queue_list
from pocketqueue.jobs.models import JobStatus, Priority
from pocketqueue.nodes import DispatchRequest
from pocketqueue.runtime import open_runtime
from procs import Service, ServiceError, code_version, cpu_seconds, machine_busy_seconds, own_tree_seconds, rss_kib

BENCH_DIR = Path(__file__).resolve().parent
HOST = "127.0.0.1"
REQUEST_TIMEOUT_SECONDS = 30.0
ENQUEUE_BATCH = 64  # below redis-py 8's default asyncio pool limit (100 connections)


class Bench:
    """Owns the scratch directory, the Redis, and every process the run starts."""

    def __init__(self, work_dir: Path, stack: ExitStack) -> None:
        self.work_dir = work_dir
        self.logs = work_dir / "logs"
        self.logs.mkdir()
        self.redis_server = LocalRedis(work_dir, write_port_file=False)
        stack.callback(self.redis_server.stop)
        self.url = self.redis_server.start()
        self.redis = redis.Redis.from_url(self.url, socket_timeout=30)
        stack.callback(self.redis.close)
        self.keys = Keys(Settings.model_fields["queue_key_prefix"].default)
        # Jobs of normal priority wait in this list (see pocketqueue.jobs.keys.queue_list).
        self.pq_list = queue_list(Settings.model_fields["queue_name"].default, Priority.NORMAL.broker_priority)

    @property
    def redis_pid(self) -> int:
        assert self.redis_server.process is not None
        return self.redis_server.process.pid

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for a child: ours (scrubbed of PocketQueue's settings) plus `extra`."""
        env = dict(os.environ)
        python_path = [str(BENCH_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
        env.update(
            PYTHONPATH=os.pathsep.join(python_path),
            REDIS_URL=self.url,
            DATA_DIR=str(self.work_dir / "var"),
            WORKER_CONCURRENCY="2",
            LOG_LEVEL="WARNING",
            **extra,
        )
        return env

    def api(self, target: Target, port: int) -> Service:
        if target.naive:
            argv = [sys.executable, "-m", "uvicorn", "naive_api:app", "--host", HOST, "--port", str(port)]
            argv += ["--log-level", "warning", "--app-dir", str(BENCH_DIR)]
        else:
            argv = [sys.executable, "-m", "pocketqueue", "api"]
        env = self.env(API_HOST=HOST, API_PORT=str(port), **dict(target.env))
        return Service(f"{target.name}-api-{port}", argv, env, self.work_dir, self.logs)

    def worker(self, kind: str, ready_file: Path, **extra_env: str) -> Service:
        argv = [sys.executable, str(BENCH_DIR / "worker_entry.py"), kind, str(ready_file)]
        return Service(f"{kind}-worker", argv, self.env(**extra_env), self.work_dir, self.logs)

    @contextmanager
    def running(self, service: Service) -> Iterator[Service]:
        service.start()
        try:
            yield service
        except Exception:
            print(f"\n--- last lines of {service.name}'s log ---\n{service.log_tail()}", file=sys.stderr)
            raise
        finally:
            service.stop()

    @contextmanager
    def serving(self, target: Target) -> Iterator[tuple[Service, int]]:
        """The target's API, started and answering, on a free port."""
        port = free_port()
        with self.running(self.api(target, port)) as service:
            service.wait_http(port, target.ready_path)
            yield service, port

    def flush(self) -> None:
        self.redis.flushall()


def scrub_settings_env() -> None:
    """Forget any PocketQueue settings in our environment, so every process uses the defaults.

    Children also run in the scratch directory, so no `.env` file is read either.
    """
    ours = {name.upper() for name in Settings.model_fields}
    for key in [key for key in os.environ if key.upper() in ours]:
        del os.environ[key]


def settings_for(url: str) -> Settings:
    """Default settings on our Redis, for in-process use; never reads a `.env` file."""
    return Settings(_env_file=None, redis_url=SecretStr(url))  # type: ignore[call-arg]


def progress(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# 1. Dispatch throughput -----------------------------------------------------------


def bench_dispatch(bench: Bench, options: Options, results: Results) -> None:
    for target in (PQ_TARGET, NAIVE_TARGET, NAIVE_ASYNC_TARGET):
        progress(f"dispatch: {target.label}, {options.clients} clients, {options.duration:.0f} s")
        with bench.serving(target) as (service, port):
            cpu_before = (cpu_seconds(service.pid), cpu_seconds(bench.redis_pid), time.process_time())
            result = asyncio.run(fixed_duration_load(port, target, options))
            api_cpu, redis_cpu, own_cpu = (
                cpu_seconds(service.pid) - cpu_before[0],
                cpu_seconds(bench.redis_pid) - cpu_before[1],
                time.process_time() - cpu_before[2],
            )
            # The CPU figures include the warm-up, so divide by the whole loaded time.
            loaded = options.warmup + result.elapsed
            run = DispatchRun(target, result, api_cpu / loaded, redis_cpu / loaded, own_cpu / loaded)
            if options.use_wrk and wrk.available() and target is not NAIVE_ASYNC_TARGET:
                run.wrk = wrk_load(bench, port, target, options)
        results.dispatch[target.name] = run
        bench.flush()


async def fixed_duration_load(port: int, target: Target, options: Options) -> LoadResult:
    payload = encode_request("POST", HOST, port, target.path, json.dumps(target.body).encode(), target.headers)
    async with LoadGenerator(HOST, port, payload, options.clients) as generator:
        await generator.warm_up(options.warmup)
        return await generator.measure(options.duration)


def bench_dispatch_key(bench: Bench, options: Options, results: Results) -> None:
    """The API without keys, then with keys and a key on every request, alternating runs."""
    for attempt in range(1, options.dispatch_key_runs + 1):
        for target in (PQ_TARGET, PQ_KEY_TARGET):
            progress(f"dispatch-key: run {attempt}, {target.label}, {options.clients} clients")
            with bench.serving(target) as (service, port):
                cpu_before = (cpu_seconds(service.pid), cpu_seconds(bench.redis_pid), time.process_time())
                result = asyncio.run(fixed_duration_load(port, target, options))
                expect(result.errors == 0, f"{target.label}: {result.errors} requests failed")
                loaded = options.warmup + result.elapsed
                api_cpu, redis_cpu, own_cpu = (
                    cpu_seconds(service.pid) - cpu_before[0],
                    cpu_seconds(bench.redis_pid) - cpu_before[1],
                    time.process_time() - cpu_before[2],
                )
                run = DispatchRun(target, result, api_cpu / loaded, redis_cpu / loaded, own_cpu / loaded)
            results.dispatch_key.setdefault(target.name, []).append(run)
            bench.flush()


def wrk_load(bench: Bench, port: int, target: Target, options: Options) -> wrk.WrkResult:
    progress(f"dispatch: {target.label} again, with wrk")
    url = f"http://{HOST}:{port}{target.path}"
    threads = min(2, options.clients)
    wrk.run_wrk(url, target.body, options.clients, 1.0, threads, bench.work_dir)  # warm-up
    return wrk.run_wrk(url, target.body, options.clients, options.wrk_seconds, threads, bench.work_dir)


# 1b. In-process dispatch (`.delay()`) ------------------------------------------------


def bench_delay(bench: Bench, options: Options, results: Results) -> None:
    progress(
        f"delay: in-process .delay() / enqueue, {options.delay_runs} x {options.delay_jobs:,} jobs "
        "per system, no worker running"
    )
    found = delay.measure(bench.env(), bench.work_dir, options.delay_jobs, options.delay_runs)
    for name in delay.SYSTEMS:
        results.delay[name] = DelayRun(
            delay.LABELS[name], options.delay_jobs, found[name]["rates"], found[name]["redis_us"]
        )
    bench.flush()


# 2. Dispatch-to-result latency ----------------------------------------------------


def bench_latency(bench: Bench, options: Options, results: Results) -> None:
    count = options.latency_warmup + options.samples
    progress(f"latency: PocketQueue dispatch + wait, {options.samples} samples")
    ready = bench.work_dir / "latency-pocketqueue.ready"
    with bench.running(bench.worker("pocketqueue", ready)) as worker, bench.serving(PQ_TARGET) as (_, port):
        worker.wait_file(ready)
        samples = asyncio.run(pq_round_trips(port, count))
    results.latency["pocketqueue"] = samples[options.latency_warmup :]
    bench.flush()

    progress(f"latency: Celery delay().get(), {options.samples} samples")
    ready = bench.work_dir / "latency-plain.ready"
    with bench.running(bench.worker("plain", ready)) as worker:
        worker.wait_file(ready)
        samples = celery_round_trips(bench.url, count)
    results.latency["celery"] = samples[options.latency_warmup :]
    bench.flush()


async def pq_round_trips(port: int, count: int) -> list[float]:
    """POST /dispatch then GET /wait/{id}, one after the other, on one keep-alive connection."""
    dispatch = encode_request("POST", HOST, port, PQ_DISPATCH, json.dumps(PQ_TARGET.body).encode())
    connection = await HttpConnection.open(HOST, port)
    samples: list[float] = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
                status, body = await connection.request(dispatch)
                expect(status == 202, f"dispatch answered {status}: {body[:200]!r}")
                wait = f"/api/queue/wait/{json.loads(body)['job_id']}?timeout=10"
                status, body = await connection.request(encode_request("GET", HOST, port, wait))
            samples.append(time.perf_counter() - started)
            expect(status == 200 and json.loads(body)["status"] == "completed", f"wait answered {status}: {body!r}")
    finally:
        await connection.close()
    return samples


def celery_round_trips(url: str, count: int) -> list[float]:
    """`task.delay().get()` in this process, against the plain Celery worker."""
    app = make_app(url)
    task = app.tasks[NOOP]
    samples: list[float] = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            task.delay().get(timeout=10)
            samples.append(time.perf_counter() - started)
    finally:
        app.close()
    return samples


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise ServiceError(message)


# 3. Worker drain ------------------------------------------------------------------


def bench_drain(bench: Bench, options: Options, results: Results) -> None:
    jobs = options.drain_jobs
    progress(f"drain: enqueueing {jobs:,} PocketQueue jobs (no worker running)")
    started = time.perf_counter()
    asyncio.run(enqueue_pq(bench.url, jobs))
    enqueued = time.perf_counter() - started
    expect(bench.redis.llen(bench.pq_list) == jobs, "not every PocketQueue job reached the queue")
    completed = bench.keys.index(JobStatus.COMPLETED)
    progress("drain: PocketQueue worker")
    run = drain(bench, "pocketqueue", jobs, lambda: int(bench.redis.zcard(completed)), options)
    results.drain["pocketqueue"] = replace(run, enqueue_seconds=enqueued)
    bench.flush()

    progress(f"drain: enqueueing {jobs:,} plain Celery jobs (no worker running)")
    started = time.perf_counter()
    enqueue_plain(bench.url, jobs)
    enqueued = time.perf_counter() - started
    expect(bench.redis.llen(PLAIN_QUEUE) == jobs, "not every Celery job reached the queue")
    progress("drain: plain Celery worker")
    run = drain(bench, "plain", jobs, lambda: jobs - queued_or_unacked(bench, PLAIN_QUEUE), options)
    results.drain["celery"] = replace(run, enqueue_seconds=enqueued)
    bench.flush()


async def enqueue_pq(url: str, jobs: int, task: str = PQ_TASK) -> None:
    """Through PocketQueue's own dispatch flow, as the API does (record + message in one MULTI)."""

    async def dispatch(runtime: Any) -> None:
        shared = {"runtime": runtime, "request": DispatchRequest(task)}
        await flows.run_flow(flows.create_dispatch_flow(), shared)

    async with open_runtime(settings_for(url)) as runtime:
        for start in range(0, jobs, ENQUEUE_BATCH):
            await asyncio.gather(*(dispatch(runtime) for _ in range(min(ENQUEUE_BATCH, jobs - start))))


def enqueue_plain(url: str, jobs: int) -> None:
    app = make_app(url)
    task = app.tasks[NOOP]
    try:
        with app.producer_or_acquire() as producer:
            for _ in range(jobs):
                task.apply_async(producer=producer)
    finally:
        app.close()


def queued_or_unacked(bench: Bench, queue: str) -> int:
    with bench.redis.pipeline(transaction=False) as pipe:
        pipe.llen(queue)
        pipe.hlen("unacked")  # kombu's Redis transport: delivered, not yet acknowledged
        waiting, unacked = pipe.execute()
    return int(waiting) + int(unacked)


def drain(bench: Bench, kind: str, jobs: int, done: Callable[[], int], options: Options, **extra_env: str) -> DrainRun:
    """Start one worker; time from its `worker_ready` until `done()` reaches `jobs`."""
    ready = bench.work_dir / f"drain-{kind}.ready"
    ready.unlink(missing_ok=True)  # drain-async starts several workers of a kind
    with bench.running(bench.worker(kind, ready, **extra_env)) as worker:
        ready_at = worker.wait_file(ready)
        at_ready = done()
        deadline = ready_at + options.drain_timeout
        while done() < jobs:
            worker.check_alive()
            expect(time.perf_counter() < deadline, f"{kind} worker did not drain {jobs} jobs in time")
            time.sleep(0.01)
        finished_at = time.perf_counter()
    return DrainRun(jobs=jobs, enqueue_seconds=0.0, done_at_ready=at_ready, seconds=finished_at - ready_at)


def bench_drain_async(bench: Bench, options: Options, results: Results) -> None:
    """An `async def` no-op against the same no-op as a `def`, alternating runs (bench_tasks.py)."""
    from bench_tasks import ASYNC_NOOP, SYNC_NOOP, TASK_MODULE  # registers them here, for the dispatch flow

    jobs = options.drain_jobs
    completed = bench.keys.index(JobStatus.COMPLETED)
    env = {"TASK_MODULES": TASK_MODULE}
    for attempt in range(1, options.drain_async_runs + 1):
        for kind, task in (("async", ASYNC_NOOP), ("sync", SYNC_NOOP)):
            progress(f"drain-async: run {attempt}, enqueueing {jobs:,} {kind} no-op jobs (no worker running)")
            started = time.perf_counter()
            asyncio.run(enqueue_pq(bench.url, jobs, task))
            enqueued = time.perf_counter() - started
            expect(bench.redis.llen(bench.pq_list) == jobs, f"not every {kind} job reached the queue")
            progress(f"drain-async: run {attempt}, PocketQueue worker, {kind} task")
            run = drain(bench, "pocketqueue", jobs, lambda: int(bench.redis.zcard(completed)), options, **env)
            results.drain_async.setdefault(kind, []).append(replace(run, enqueue_seconds=enqueued))
            bench.flush()


def bench_drain_flow(bench: Bench, options: Options, results: Results) -> None:
    """A 5-node no-op flow job against a plain no-op task, alternating runs: the cost of stages."""
    from bench_tasks import FLOW_NOOP, SYNC_NOOP, TASK_MODULE

    jobs = max(1, options.drain_jobs // 5)  # 5 checkpoints a job: a fifth of the jobs, as many writes
    completed = bench.keys.index(JobStatus.COMPLETED)
    env = {"TASK_MODULES": TASK_MODULE}
    for attempt in range(1, options.drain_async_runs + 1):
        for kind, task in (("flow", FLOW_NOOP), ("sync", SYNC_NOOP)):
            progress(f"drain-flow: run {attempt}, enqueueing {jobs:,} {kind} jobs (no worker running)")
            asyncio.run(enqueue_pq(bench.url, jobs, task))
            expect(bench.redis.llen(bench.pq_list) == jobs, f"not every {kind} job reached the queue")
            progress(f"drain-flow: run {attempt}, PocketQueue worker, {kind} task")
            run = drain(bench, "pocketqueue", jobs, lambda: int(bench.redis.zcard(completed)), options, **env)
            results.drain_flow.setdefault(kind, []).append(run)
            bench.flush()


# 4. Soak --------------------------------------------------------------------------


def bench_soak(bench: Bench, options: Options, results: Results) -> None:
    plan = [(PQ_TARGET, options.soak, options.soak_seconds)]
    if options.naive_soak > 0:
        plan.append((NAIVE_TARGET, options.naive_soak, options.naive_soak_seconds))
    for target, count, seconds in plan:
        progress(f"soak: {target.label}, {count:,} dispatches (at most {seconds:.0f} s)")
        with bench.serving(target) as (service, port):
            results.soak[target.name] = asyncio.run(soak(service.pid, port, target, count, seconds, options))
        bench.flush()


async def soak(pid: int, port: int, target: Target, count: int, seconds: float, options: Options) -> SoakRun:
    payload = encode_request("POST", HOST, port, target.path, json.dumps(target.body).encode())
    async with LoadGenerator(HOST, port, payload, options.clients) as generator:
        await generator.warm_up(options.warmup)
        samples = [(0, 0.0, rss_kib(pid))]

        def sample(done: int, elapsed: float) -> None:
            samples.append((done, elapsed, rss_kib(pid)))
            if len(samples) % 15 == 0:
                progress(f"soak: {done:,} done, API RSS {samples[-1][2] / 1024:.0f} MiB")

        result = await generator.measure(seconds, count, on_tick=sample, tick_seconds=options.rss_interval)
        samples.append((result.requests, result.elapsed, rss_kib(pid)))
    return SoakRun(target, count, result, samples)


# Main -----------------------------------------------------------------------------


def parse_options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 1-2 minute smoke run with small counts")
    parser.add_argument("--soak", type=int, help="dispatches in the PocketQueue soak (default 200000)")
    parser.add_argument("--naive-soak", type=int, help="dispatches in the naive soak; 0 skips it")
    parser.add_argument("--naive-soak-seconds", type=float, help="time cap of the naive soak (default 30)")
    parser.add_argument("--drain", type=int, help="jobs in the drain tests (default 10000)")
    parser.add_argument("--drain-async-runs", type=int, help="drain-async runs, each kind (default 1)")
    parser.add_argument("--dispatch-key-runs", type=int, help="dispatch-key runs, with and without a key (default 3)")
    parser.add_argument("--delay-jobs", type=int, help="jobs per run of in-process .delay() (default 5000)")
    parser.add_argument("--delay-runs", type=int, help="runs per system of in-process .delay() (default 3)")
    parser.add_argument("--samples", type=int, help="round trips in the latency test (default 300)")
    parser.add_argument("--duration", type=float, help="seconds measured per dispatch run (default 15)")
    parser.add_argument("--clients", type=int, help="concurrent HTTP clients (default 64)")
    parser.add_argument("--no-wrk", action="store_true", help="skip the wrk cross-check even if wrk is installed")
    parser.add_argument("--only", help=f"comma-separated phases to run, of: {','.join(PHASES)}")
    args = parser.parse_args(argv)
    options = Options.smoke() if args.quick else Options()
    overrides: dict[str, Any] = {
        "soak": args.soak,
        "naive_soak": args.naive_soak,
        "naive_soak_seconds": args.naive_soak_seconds,
        "drain_jobs": args.drain,
        "drain_async_runs": args.drain_async_runs,
        "dispatch_key_runs": args.dispatch_key_runs,
        "delay_jobs": args.delay_jobs,
        "delay_runs": args.delay_runs,
        "samples": args.samples,
        "duration": args.duration,
        "clients": args.clients,
    }
    options = replace(options, **{key: value for key, value in overrides.items() if value is not None})
    if args.no_wrk:
        options = replace(options, use_wrk=False)
    if args.only:
        phases = tuple(phase.strip() for phase in args.only.split(",") if phase.strip())
        unknown = set(phases) - set(PHASES)
        if unknown:
            parser.error(f"unknown phase(s): {', '.join(sorted(unknown))}")
        options = replace(options, phases=phases)
    return options


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C or SIGTERM: unwind, stopping every process started; a second one is ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("\nstopping everything this run started...", file=sys.stderr, flush=True)
    raise KeyboardInterrupt


def run(options: Options) -> Results:
    results = Results(options)
    phases: dict[str, Callable[[Bench, Options, Results], None]] = {
        "dispatch": bench_dispatch,
        "dispatch-key": bench_dispatch_key,
        "delay": bench_delay,
        "latency": bench_latency,
        "drain": bench_drain,
        "drain-async": bench_drain_async,
        "drain-flow": bench_drain_flow,
        "soak": bench_soak,
    }
    started_on = code_version(BENCH_DIR.parent)
    with ExitStack() as stack:
        work_dir = Path(tempfile.mkdtemp(prefix="pocketqueue-bench-"))
        stack.callback(shutil.rmtree, work_dir, ignore_errors=True)
        bench = Bench(work_dir, stack)
        progress(f"Redis for this run: {bench.url}")
        for name in PHASES:
            if name in options.phases:
                with watching_other_load(bench, name, results):
                    phases[name](bench, options, results)
    results.code = (started_on, code_version(BENCH_DIR.parent))
    return results


@contextmanager
def watching_other_load(bench: Bench, phase: str, results: Results) -> Iterator[None]:
    """Record how much CPU processes we did not start used during `phase` (they skew the numbers)."""

    def ours() -> float:  # our Redis is only reaped at the very end, so count it apart
        return own_tree_seconds() + cpu_seconds(bench.redis_pid)

    machine, own, started = machine_busy_seconds(), ours(), time.monotonic()
    yield
    other = (machine_busy_seconds() - machine) - (ours() - own)
    results.other_cpu[phase] = max(0.0, other) / ((time.monotonic() - started) * (os.cpu_count() or 1))


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    scrub_settings_env()
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    try:
        results = run(options)
    except KeyboardInterrupt:
        print("interrupted; everything this run started has been stopped", file=sys.stderr)
        return 130
    text = report.render(results, time.monotonic() - started)
    print(text)
    out_dir = BENCH_DIR / "results"
    out_dir.mkdir(exist_ok=True)
    out_file = out_dir / f"bench-{datetime.now():%Y%m%d-%H%M%S}.md"
    out_file.write_text(text)
    progress(f"report written to {out_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
