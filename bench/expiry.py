"""PocketQueue's Redis footprint: N jobs dispatched, run, finished and expired leave Redis where it started.

    .venv/bin/python bench/expiry.py                # 100,000 jobs (several minutes on 2 cores)
    .venv/bin/python bench/expiry.py --jobs 2000    # or --quick: the same with 2,000 jobs
    .venv/bin/python bench/expiry.py --recovery 6   # janitor sweeps (and reaps) every 0.5 s, not every 5 s

Checks the bound "every key PocketQueue writes (records, indexes, idempotency and unique
keys, schedule, heartbeats, progress) expires or is trimmed": with short TTLs (5 s), the
run starts its own Redis (never an existing one) and real workers (`python -m pocketqueue
worker`, through bench/worker_entry.py), then

1. records INFO memory and every key once the workers are up (the cold baseline);
2. runs a small warm-up of the same mix and waits for it to expire (the warm baseline:
   Lua scripts loaded, every worker process connected, Celery's own keys declared);
3. dispatches N jobs through PocketQueue's dispatch flow (open_runtime + the
   CeleryTaskDispatchNode flow, 64 at a time): plain jobs, progress reports, idempotency
   keys (with repeats), unique keys (with collisions), high and low priority, delays of
   1-2 s, failures that retry once and are dead-lettered, and cancels of queued and of
   scheduled jobs;
4. waits until every job has finished, then until every key it wrote has expired;
5. compares keys and memory with the baselines, and once more after the workers stop.

The mix tags part of its jobs (`book_id:<n>`, `tenant:<name>`), so listing indexes of
every kind are written; the janitor's reap.lua takes a job out of them shortly before its
record expires, and a job's own event stream expires with it: the verdict wants every
`list:*` and `events:<id>` (per-job event list) key gone. The keys kept on purpose (the global event stream,
the counters, the per-minute stats, the recent run times, the worker registry) are
bounded by design, not per job: bench/expiry_bounded.py checks them against their bounds
and reports their sizes; they are left out of the leftovers and of the memory comparison.

Exits 1 when a key is left over (other than the live workers' own `{prefix}:worker:*`
heartbeats, their janitors' `{prefix}:janitor` lease and the bounded-by-design keys), a
bounded-by-design key exceeds its bound, or memory less those keys' MEMORY USAGE ends
more than --limit-kib (64) above the warm baseline (less theirs there). Memory
is INFO used_memory less what client connections hold (query buffers, which Redis 6.2
leaves out of mem_clients_normal, and mem_clients_normal itself), the median of 21
readings; the slow log is emptied before each reading. The report shows used_memory as
read too, and names the process behind every connection opened during the run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any

import redis
from pydantic import SecretStr

from expiry_bounded import BoundedKey, Bounds, bounded_kind, bounded_lines, bounded_memory, read_bounded
from pocketqueue import flows
from pocketqueue.config import Settings
from pocketqueue.jobs.keys import Keys
from pocketqueue.jobs.models import JobStatus, Priority
from pocketqueue.nodes import DispatchRequest
from pocketqueue.runtime import QueueRuntime, open_runtime
from procs import Service, ServiceError, code_version, machine_summary, scratch
from run import ENQUEUE_BATCH, progress, scrub_settings_env

BENCH_DIR = Path(__file__).resolve().parent
TASK = "pocketqueue.debug"
TTL_SECONDS = 5
RETRY_DELAY_SECONDS = 0.5
SCHEDULED_CANCEL_DELAY = 30.0  # cancelled long before it is due
FINISHED = {status.value for status in JobStatus if status.finished}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
NUMBER = re.compile(r"(?<=[-:=])\d+(?=$|[-:])")
MEMORY_FIELDS = (
    "used_memory",
    "used_memory_dataset",
    "used_memory_overhead",
    "used_memory_scripts",
    "mem_clients_normal",
    "mem_aof_buffer",
    "used_memory_lua",
)


# The mix --------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One job to dispatch, and what to do right after ('', 'cancel', 'repeat', 'collide')."""

    kind: str
    request: DispatchRequest
    then: str = ""


def _delay(i: int) -> float:
    return 1.0 + (i % 11) / 10  # 1.0 to 2.0 s


def _tags(i: int) -> dict[str, str]:
    # Each tag is a listing index of its own (`list:tag:<name>=<value>`): many distinct
    # values (one per book) and a few common ones.
    return {"book_id": f"{i // 3}", "tenant": ("acme", "globex", "initech")[i % 3]}


def _plain(i: int, tag: str) -> Step:
    tags = _tags(i) if i % 2 else {}
    return Step("plain", DispatchRequest(TASK, kwargs={"result": {"n": i}}, tags=tags))


def _progress(i: int, tag: str) -> Step:
    # Two progress reports: each is a HEARTBEAT (lease renewed, progress and step written).
    return Step("progress", DispatchRequest(TASK, kwargs={"sleep": 0.02, "steps": 2}, tags=_tags(i)))


def _idempotent(i: int, tag: str) -> Step:
    request = DispatchRequest(TASK, kwargs={"result": i}, idempotency_key=f"{tag}-idem-{i}")
    return Step("idempotent", request, "repeat" if i % 5 == 0 else "")


def _unique(i: int, tag: str) -> Step:
    request = DispatchRequest(TASK, kwargs={"result": i}, unique_key=f"{tag}-unique-{i}")
    return Step("unique", request, "collide" if i % 5 == 0 else "")


def _high(i: int, tag: str) -> Step:
    return Step("high", DispatchRequest(TASK, kwargs={"result": i}, priority=Priority.HIGH))


def _low(i: int, tag: str) -> Step:
    return Step("low", DispatchRequest(TASK, kwargs={"result": i}, priority=Priority.LOW))


def _delayed(i: int, tag: str) -> Step:
    request = DispatchRequest(TASK, kwargs={"result": i}, delay_seconds=_delay(i))
    if i % 3 == 1:
        request = replace(request, idempotency_key=f"{tag}-idem-{i}")
    elif i % 3 == 2:
        request = replace(request, unique_key=f"{tag}-unique-{i}")
    return Step("delayed", request)


def _failing(i: int, tag: str) -> Step:
    # Fails, is retried once (status retrying, in the schedule), fails again: dead-lettered.
    return Step("failing", DispatchRequest(TASK, kwargs={"fail": True}, max_retries=1, tags=_tags(i)))


def _cancel_queued(i: int, tag: str) -> Step:
    unique = f"{tag}-unique-{i}" if i % 2 else None
    return Step("cancel-queued", DispatchRequest(TASK, kwargs={"result": i}, unique_key=unique), "cancel")


def _cancel_scheduled(i: int, tag: str) -> Step:
    idem = f"{tag}-idem-{i}" if i % 2 else None
    request = DispatchRequest(
        TASK, kwargs={"result": i}, delay_seconds=SCHEDULED_CANCEL_DELAY, idempotency_key=idem, tags=_tags(i)
    )
    return Step("cancel-scheduled", request, "cancel")


def _combined(i: int, tag: str) -> Step:
    request = DispatchRequest(
        TASK,
        kwargs={"result": i},
        priority=Priority.HIGH if i % 2 else Priority.LOW,
        idempotency_key=f"{tag}-idem-{i}",
        unique_key=f"{tag}-unique-{i}",
    )
    return Step("idempotent+unique", request)


# (slot bound out of 100, builder): 40% plain, 5% progress, 10% idempotent, ...
MIX: tuple[tuple[int, Callable[[int, str], Step]], ...] = (
    (40, _plain),
    (45, _progress),
    (55, _idempotent),
    (65, _unique),
    (73, _high),
    (81, _low),
    (87, _delayed),
    (90, _failing),
    (94, _cancel_queued),
    (97, _cancel_scheduled),
    (100, _combined),
)


def step_for(i: int, tag: str) -> Step:
    slot = i % 100
    return next(build for bound, build in MIX if slot < bound)(i, tag)


# Redis state ----------------------------------------------------------------------


QUERY_BUFFERS = "client query buffers"
NO_QUERY_BUFFERS = "used_memory - query buffers"
NET = "used_memory - all client memory"
UNBOUNDED = "used_memory - client memory - bounded-by-design keys"
CLIENTS = "connected_clients"
RAW_RANGE = ("used_memory (lowest reading)", "used_memory (highest reading)")
MEMORY_ROWS = (*MEMORY_FIELDS, *RAW_RANGE, QUERY_BUFFERS, NO_QUERY_BUFFERS, NET, CLIENTS)


@dataclass(frozen=True)
class Connection:
    port: int  # the client's own port: who it is (see connection_owners)
    age: int
    cmd: str


@dataclass
class Snapshot:
    label: str
    memory: dict[str, int]
    keys: dict[str, str]  # key -> type
    stats: dict[str, int]  # MEMORY STATS (flattened), MEMORY USAGE of each key, cached scripts
    connections: dict[str, Connection]  # CLIENT LIST, by client id
    slow: list[tuple[int, str]]  # SLOWLOG entries since the previous snapshot: (microseconds, command)
    owners: dict[int, str] = field(default_factory=dict)  # client port -> which process
    bounded: list[BoundedKey] = field(default_factory=list)  # the keys kept on purpose (expiry_bounded.py)

    @property
    def used(self) -> int:
        """What the verdict compares: used_memory less every client's buffers and structures."""
        return self.memory[NET]

    @property
    def unbounded(self) -> int:
        """`used` less the MEMORY USAGE of the bounded-by-design keys: what must come back."""
        return self.used - bounded_memory(self.bounded)


def query_buffers(clients: list[dict[str, Any]]) -> int:
    return sum(int(c.get("qbuf", 0)) + int(c.get("qbuf-free", 0)) for c in clients)


def read_memory(client: redis.Redis, samples: int = 21, interval: float = 0.1) -> dict[str, int]:
    """INFO memory, less the clients' memory (the median of `samples` readings).

    Even an idle Redis with live workers moves by multiples of 32 KiB: every client in the
    middle of a command (a worker's BRPOP every second, its janitor every half second)
    holds a 32 KiB query buffer, which Redis 6.2 does not count in mem_clients_normal.
    INFO and CLIENT LIST are read in one MULTI, so the query buffers (qbuf + qbuf-free of
    every client) are summed at the same instant as used_memory. mem_clients_normal (each
    connection's own ~17 KiB) is taken off too: connections come from the processes'
    pools, not from jobs; they are counted and attributed in the report instead.
    """
    readings: list[tuple[int, dict[str, Any], int]] = []
    for _ in range(samples):
        with client.pipeline(transaction=True) as pipe:
            pipe.info("memory")
            pipe.info("clients")
            pipe.client_list()
            info, clients_info, clients = pipe.execute()
        info = {**info, **clients_info}
        buffers = query_buffers(clients)
        readings.append((int(info["used_memory"]) - buffers - int(info["mem_clients_normal"]), info, buffers))
        time.sleep(interval)
    raw = [int(info["used_memory"]) for _, info, _ in readings]
    net, info, buffers = sorted(readings, key=lambda reading: reading[0])[len(readings) // 2]
    memory = {name: int(info.get(name, 0)) for name in (*MEMORY_FIELDS, CLIENTS)}
    memory.update({QUERY_BUFFERS: buffers, NO_QUERY_BUFFERS: memory["used_memory"] - buffers, NET: net})
    memory.update({RAW_RANGE[0]: min(raw), RAW_RANGE[1]: max(raw)})
    return memory


def memory_stats(client: redis.Redis) -> tuple[int, dict[str, Any]]:
    """MEMORY STATS, and the clients' query buffers at the same instant (see read_memory)."""
    with client.pipeline(transaction=True) as pipe:
        pipe.memory_stats()
        pipe.client_list()
        stats, clients = pipe.execute()
    time.sleep(0.05)
    return query_buffers(clients), stats


def take_slowlog(client: redis.Redis) -> list[tuple[int, str]]:
    """The slow log so far, then emptied: its entries (capped at 128) would count as memory."""
    entries = client.slowlog_get(128)
    client.slowlog_reset()
    slow = []
    for entry in entries:
        command = entry.get("command", b"")
        text = command.decode(errors="replace") if isinstance(command, bytes) else str(command)
        slow.append((int(entry.get("duration", 0)), text[:100]))
    return slow


def snapshot(client: redis.Redis, label: str) -> Snapshot:
    slow = take_slowlog(client)
    memory = read_memory(client)
    names = sorted(client.scan_iter(count=1000))
    with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.type(name)
            pipe.memory_usage(name)
        replies = pipe.execute()
    stats = {f"MEMORY USAGE {name}": int(size or 0) for name, size in zip(names, replies[1::2], strict=True)}
    buffers, quietest = min((memory_stats(client) for _ in range(20)), key=lambda reading: reading[0])
    stats[QUERY_BUFFERS] = buffers
    for name, value in quietest.items():
        if isinstance(value, dict):  # db.0: the main and expires hash tables
            stats.update({f"{name} {part}": int(size) for part, size in value.items()})
        elif isinstance(value, int) and "peak" not in name:
            stats[name] = value
    stats["number_of_cached_scripts"] = int(client.info("memory").get("number_of_cached_scripts", 0))
    connections = {
        c["id"]: Connection(int(c["addr"].rsplit(":", 1)[1]), int(c["age"]), c["cmd"]) for c in client.client_list()
    }
    return Snapshot(label, memory, dict(zip(names, replies[::2], strict=True)), stats, connections, slow)


def connection_owners(redis_port: int) -> dict[int, int]:
    """Client port -> pid of the process holding that connection to our Redis (from `ss -tnp`)."""
    try:
        out = subprocess.run(["ss", "-tnpH"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    owners = {}
    for line in out.splitlines():
        fields = line.split()
        found = re.search(r"pid=(\d+)", line)
        if len(fields) >= 5 and fields[4].endswith(f":{redis_port}") and found:
            owners[int(fields[3].rsplit(":", 1)[1])] = int(found.group(1))
    return owners


def lives_with_workers(key: str, keys: Keys) -> bool:
    """A key that lasts as long as a worker does: its heartbeat, or the janitors' leadership lease."""
    return key.startswith(keys.worker("")) or key == keys.janitor


def kept(key: str, keys: Keys) -> bool:
    """A key allowed to outlive the jobs: one living with the workers, or bounded by design."""
    return lives_with_workers(key, keys) or bounded_kind(key, keys) is not None


def pattern(key: str, prefix: str) -> str:
    """A key with its ids and numbers replaced by `*` (and the run's prefix by `{prefix}`)."""
    key = key.replace(prefix, "{prefix}", 1) if key.startswith(prefix) else key
    return NUMBER.sub("*", UUID.sub("*", key))


class Sampler(threading.Thread):
    """Samples used_memory and DBSIZE every `interval` seconds; keeps the peaks."""

    def __init__(self, client: redis.Redis, interval: float = 0.25) -> None:
        super().__init__(name="memory-sampler", daemon=True)
        self.client = client
        self.interval = interval
        self.peak_used = 0
        self.peak_keys = 0
        self.last: dict[str, int] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            try:
                used = int(self.client.info("memory")["used_memory"])
                keys = int(self.client.dbsize())
            except redis.RedisError:
                continue
            self.last = {"used": used, "keys": keys}
            self.peak_used = max(self.peak_used, used)
            self.peak_keys = max(self.peak_keys, keys)

    def reset(self) -> None:
        self.peak_used = self.peak_keys = 0

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


class Tracker(threading.Thread):
    """Follows every dispatched job until its record says it finished (or it has expired).

    Records of active jobs have no TTL, so a record that is gone belongs to a job that
    finished and expired between two looks.
    """

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        super().__init__(name="job-tracker", daemon=True)
        self.client = client
        self.keys = keys
        self.inbox: queue.SimpleQueue[list[tuple[str, str]]] = queue.SimpleQueue()
        self.pending: dict[str, str] = {}  # job id -> kind
        self.seen: Counter[str] = Counter()  # "kind: status" when first seen finished
        self.dispatched_all = threading.Event()
        self.finished_at = 0.0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                self._take_new()
                if not self.pending and self.dispatched_all.is_set() and self.inbox.empty():
                    self.finished_at = time.perf_counter()
                    return
                self._look()
                self._halt.wait(0.2)
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)

    def _take_new(self) -> None:
        while True:
            try:
                self.pending.update(self.inbox.get_nowait())
            except queue.Empty:
                return

    def _look(self, chunk: int = 2000) -> None:
        ids = list(self.pending)
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk]
            with self.client.pipeline(transaction=False) as pipe:
                for job_id in part:
                    pipe.hmget(self.keys.job(job_id), "status", "attempts")
                rows = pipe.execute()
            for job_id, (status, attempts) in zip(part, rows, strict=True):
                if status is None:
                    self.seen[f"{self.pending.pop(job_id)}: expired before seen"] += 1
                elif status in FINISHED:
                    kind = self.pending.pop(job_id)
                    self.seen[f"{kind}: {status}" + (f" after {attempts} attempts" if status == "failed" else "")] += 1


# Dispatching ----------------------------------------------------------------------


@dataclass
class RoundResult:
    jobs: int
    created: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    dispatch_seconds: float = 0.0
    done_seconds: float = 0.0
    expiry_seconds: float = 0.0
    seen: Counter[str] = field(default_factory=Counter)


DISPATCH_FLOW = flows.create_dispatch_flow()
CANCEL_FLOW = flows.create_cancel_flow()


async def dispatch_step(runtime: QueueRuntime, step: Step) -> tuple[list[str], list[str]]:
    """Dispatch one step; returns (ids of the jobs created, outcome notes)."""
    shared: dict[str, Any] = {"runtime": runtime, "request": step.request}
    outcome = await DISPATCH_FLOW.run_async(shared)
    if outcome != "dispatched":
        return [], [f"{step.kind}: {outcome} ({type(shared.get('error')).__name__})"]
    job_id: str = shared["job_id"]
    created, notes = [job_id], [f"{step.kind}: {outcome}"]
    if step.then == "cancel":
        notes.append(f"{step.kind} cancel: {await CANCEL_FLOW.run_async({'runtime': runtime, 'job_id': job_id})}")
    elif step.then == "repeat":
        again: dict[str, Any] = {"runtime": runtime, "request": step.request}
        outcome = await DISPATCH_FLOW.run_async(again)
        same = outcome == "duplicate" and again["job_id"] == job_id
        notes.append(f"idempotent repeat: {outcome}" + ("" if same else " (NOT the first job)"))
    elif step.then == "collide":
        collide: dict[str, Any] = {"runtime": runtime, "request": replace(step.request, kwargs={"result": "second"})}
        outcome = await DISPATCH_FLOW.run_async(collide)
        if outcome == "dispatched":  # the first job had already finished: a new one may hold the key
            created.append(collide["job_id"])
        error = type(collide.get("error")).__name__ if outcome == "rejected" else ""
        notes.append(f"unique collision: {outcome}" + (f" ({error})" if error else ""))
    return created, notes


async def dispatch_all(
    settings: Settings, steps: Iterable[Step], total: int, tracker: Tracker, result: RoundResult
) -> None:
    pending = list(steps)
    async with open_runtime(settings) as runtime:
        for start in range(0, total, ENQUEUE_BATCH):
            batch = pending[start : start + ENQUEUE_BATCH]
            replies = await asyncio.gather(*(dispatch_step(runtime, step) for step in batch))
            new: list[tuple[str, str]] = []
            for step, (created, notes) in zip(batch, replies, strict=True):
                new.extend((job_id, step.kind) for job_id in created)
                result.outcomes.update(notes)
            tracker.inbox.put(new)
            result.created += len(new)
            done = start + len(batch)
            if done % 10_000 < ENQUEUE_BATCH and done >= 10_000:
                progress(f"dispatched {done:,} of {total:,}")


# The run --------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    jobs: int
    warmup: int
    workers: int
    concurrency: int
    ttl: int
    limit_kib: int
    keep: bool
    recovery: int | None = None  # QUEUE_RECOVERY_SECONDS (the janitor sweeps, and reaps, every 1/12 of it)


class Run:
    """Owns the scratch directory, the Redis and the workers; everything is stopped on exit."""

    def __init__(self, options: Options, stack: ExitStack) -> None:
        self.options = options
        self.stack = stack
        place = scratch(stack, "expiry", options.keep)  # first: its Redis stops last, after the workers
        self.work_dir, self.logs, self.url = place.work_dir, place.logs, place.url
        self.port = place.redis.port
        tag = f"pqexp-{uuid.uuid4().hex[:6]}"
        self.tag = tag
        self.settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            redis_url=SecretStr(self.url),
            data_dir=self.work_dir / "var",
            task_modules=[],
            worker_concurrency=options.concurrency,
            log_level="WARNING",
            queue_name=tag,
            queue_key_prefix=tag,
            queue_job_ttl_seconds=options.ttl,
            queue_dead_letter_ttl_seconds=options.ttl,
            queue_idempotency_ttl_seconds=options.ttl,
            queue_max_retries=0,
            queue_retry_delays=[RETRY_DELAY_SECONDS],
            **({} if options.recovery is None else {"queue_recovery_seconds": options.recovery}),
        )
        self.keys = Keys(tag)
        self.clients = [self._client() for _ in range(3)]  # main, sampler, tracker: open at every snapshot
        self.workers: list[Service] = []

    def _client(self) -> redis.Redis:
        client = redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=60)
        client.ping()
        self.stack.callback(client.close)
        return client

    @property
    def redis(self) -> redis.Redis:
        return self.clients[0]

    def worker_env(self) -> dict[str, str]:
        """Our environment without any PocketQueue settings, plus every one of ours."""
        ours = {name.upper() for name in Settings.model_fields}
        env = {key: value for key, value in os.environ.items() if key.upper() not in ours}
        for name, value in self.settings.model_dump().items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, list):
                value = ",".join(str(item) for item in value)
            env[name.upper()] = str(value)
        env["PYTHONPATH"] = os.pathsep.join([str(BENCH_DIR), *filter(None, [os.environ.get("PYTHONPATH")])])
        return env

    def start_workers(self) -> None:
        for number in range(self.options.workers):
            ready = self.work_dir / f"worker-{number}.ready"
            argv = [sys.executable, str(BENCH_DIR / "worker_entry.py"), "pocketqueue", str(ready)]
            service = Service(f"worker-{number}", argv, self.worker_env(), self.work_dir, self.logs)
            self.workers.append(service)
            self.stack.callback(service.stop)  # SIGTERM (warm shutdown), before Redis stops
            service.start()
        for number, service in enumerate(self.workers):
            service.wait_file(self.work_dir / f"worker-{number}.ready")
        # Each janitor writes its heartbeat key on its first tick.
        self.wait(lambda: len(self.worker_keys()) >= len(self.workers), 30, "worker heartbeat keys")

    def take(self, label: str) -> Snapshot:
        """A snapshot, with each connection attributed to the process that holds it."""
        shot = snapshot(self.redis, label)
        shot.owners = {port: self.role(pid) for port, pid in connection_owners(self.port).items()}
        shot.bounded = read_bounded(self.redis, self.keys, shot.keys, self.bounds())
        return shot

    def bounds(self) -> Bounds:
        live = sum(1 for service in self.workers if service.process is not None)
        node = int(self.redis.config_get("stream-node-max-entries")["stream-node-max-entries"])
        return Bounds(tasks=1, queues=1, workers=self.options.workers, live_workers=live, stream_node=node)

    def unbounded_memory(self) -> int:
        """As Snapshot.unbounded, read now (the median of 11 readings)."""
        names = list(self.redis.scan_iter(f"{self.tag}:*", count=1000))
        bounded = bounded_memory(read_bounded(self.redis, self.keys, names, self.bounds()))
        return read_memory(self.redis, samples=11)[NET] - bounded

    def role(self, pid: int) -> str:
        if pid == os.getpid():
            return f"bench/expiry.py ({pid})"
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            parent = 0
        for service in self.workers:
            process = service.process
            if process is not None and pid == process.pid:
                return f"{service.name} main process ({pid})"
            if process is not None and parent == process.pid:
                return f"{service.name} pool process ({pid})"
        return f"pid {pid}"

    def worker_keys(self) -> list[str]:
        return list(self.redis.scan_iter(f"{self.keys.worker('')}*"))

    def check_workers(self) -> None:
        for service in self.workers:
            service.check_alive()

    def wait(self, ready: Callable[[], object], timeout: float, what: str, interval: float = 0.1) -> float:
        """Poll `ready()` (checking the workers live) until truthy; returns the seconds taken."""
        started = time.perf_counter()
        while not ready():
            self.check_workers()
            if time.perf_counter() - started > timeout:
                raise ServiceError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(interval)
        return time.perf_counter() - started

    def leftovers(self, baseline: Snapshot) -> list[str]:
        """Keys that were not in `baseline`, other than live workers' heartbeats and janitor lease."""
        keys = self.redis.scan_iter(count=1000)
        return sorted(k for k in keys if k not in baseline.keys and not kept(k, self.keys))

    def run_round(self, count: int, label: str, sampler: Sampler) -> RoundResult:
        result = RoundResult(count)
        tracker = Tracker(self.clients[2], self.keys)
        tracker.start()
        steps = (step_for(i, f"{self.tag}-{label}") for i in range(count))
        kinds = [step_for(i, "").kind for i in range(count)]
        result.kinds.update(kinds)
        started = time.perf_counter()
        try:
            asyncio.run(dispatch_all(self.settings, steps, count, tracker, result))
            result.dispatch_seconds = time.perf_counter() - started
            progress(f"{label}: {result.created:,} jobs created in {result.dispatch_seconds:.1f} s; waiting for them")
            tracker.dispatched_all.set()
            self._follow(tracker, sampler, label)
        finally:
            tracker.stop()
        if tracker.error is not None:
            raise tracker.error
        result.done_seconds = tracker.finished_at - started
        result.seen = tracker.seen
        return result

    def _follow(self, tracker: Tracker, sampler: Sampler, label: str) -> None:
        """Wait for the tracker to see every job finished; fail if it stops making progress."""
        last_pending, last_change, last_report = -1, time.monotonic(), time.monotonic()
        while tracker.is_alive():
            self.check_workers()
            pending = len(tracker.pending)
            now = time.monotonic()
            if pending != last_pending:
                last_pending, last_change = pending, now
            if now - last_change > 120:
                raise ServiceError(f"{label}: {pending:,} jobs made no progress for 120 s")
            if now - last_report > 15:
                last_report = now
                used = sampler.last.get("used", 0)
                progress(f"{label}: {pending:,} jobs not finished; {sampler.last.get('keys', 0):,} keys, {kib(used)}")
            tracker.join(timeout=0.5)

    def expire(self, baseline: Snapshot, result: RoundResult, settle: bool = True) -> None:
        """Wait until every key the round wrote is gone (bounded), then for memory to settle."""
        started = time.perf_counter()
        deadline = started + 3 * self.options.ttl + 60
        while self.leftovers(baseline) and time.perf_counter() < deadline:
            self.check_workers()
            time.sleep(0.5)
        result.expiry_seconds = time.perf_counter() - started
        # Redis shrinks its key tables in its cron: give used_memory up to 20 s to come
        # back within the limit (read the way snapshot() reads it).
        until = time.monotonic() + 20
        while settle and time.monotonic() < until:
            if self.unbounded_memory() - baseline.unbounded <= self.options.limit_kib * 1024:
                return


def kib(size: int) -> str:
    return f"{size / 1024:,.1f} KiB"


# Report ---------------------------------------------------------------------------


def key_table(keys: Iterable[str], prefix: str, types: dict[str, str] | None = None) -> list[str]:
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(pattern(key, prefix), []).append(key)
    lines = []
    for name, members in sorted(groups.items()):
        kind = f" ({types[members[0]]})" if types and members[0] in types else ""
        examples = ", ".join(members[:3]) + (" ..." if len(members) > 3 else "")
        lines.append(f"    {name}{kind}: {len(members):,}   e.g. {examples}")
    return lines or ["    (none)"]


def memory_lines(snapshots: list[Snapshot], peak: int) -> list[str]:
    header = f"    {'':38}" + "".join(f"{s.label:>14}" for s in snapshots)
    lines = [header]
    for name in MEMORY_ROWS:
        lines.append(f"    {name:38}" + "".join(f"{s.memory[name]:>14,}" for s in snapshots))
    lines.append(f"    {'keys (DBSIZE)':38}" + "".join(f"{len(s.keys):>14,}" for s in snapshots))
    lines.append(f"    peak used_memory during the run: {peak:,} bytes ({peak / 1024**2:,.1f} MiB)")
    return lines


def delta_line(name: str, before: Snapshot, after: Snapshot) -> str:
    delta = after.memory[name] - before.memory[name]
    return f"    {name}, {after.label} - {before.label}: {delta:+,} bytes ({kib(delta)})"


def changed_stats(before: Snapshot, after: Snapshot) -> list[str]:
    """MEMORY STATS fields, MEMORY USAGE of keys and cached scripts that differ between two snapshots."""
    lines = []
    for name in sorted(set(before.stats) | set(after.stats)):
        old, new = before.stats.get(name), after.stats.get(name)
        if old != new and not any(noise in name for noise in ("allocator", "fragmentation", "rss", "percentage")):
            delta = f"{(new or 0) - (old or 0):+,}"
            lines.append(
                f"    {name}: {'-' if old is None else f'{old:,}'} -> {'-' if new is None else f'{new:,}'} ({delta})"
            )
    return lines or ["    (none)"]


def connection_lines(before: Snapshot, after: Snapshot) -> list[str]:
    """The connections `after` has that `before` had not, and who holds them."""
    new = [c for cid, c in after.connections.items() if cid not in before.connections]
    gone = [cid for cid in before.connections if cid not in after.connections]
    lines = [
        f"    {len(before.connections)} -> {len(after.connections)} connections: "
        f"{len(new)} opened since {before.label} and still open, {len(gone)} closed"
    ]
    for connection in sorted(new, key=lambda c: c.port):
        owner = after.owners.get(connection.port, "?")
        lines.append(f"    + {owner}: age {connection.age} s, last command {connection.cmd}")
    return lines


def slow_lines(shot: Snapshot) -> list[str]:
    names = Counter(command.split(" ", 1)[0].lower() for _, command in shot.slow)
    lines = [
        f"    {len(shot.slow)} entries (emptied after reading): " + ", ".join(f"{n} x{k}" for n, k in names.items())
    ]
    for duration, command in sorted(shot.slow, reverse=True)[:5]:
        lines.append(f"    {duration / 1000:.1f} ms: {command}")
    return lines


def run_lines(run: Run, result: RoundResult, wall: float) -> list[str]:
    options = run.options
    machine = ", ".join(f"{name} {value}" for name, value in machine_summary().items())
    return [
        f"# PocketQueue expiry: {result.jobs:,} jobs dispatched, finished and expired",
        "",
        f"machine: {machine}; code {code_version(BENCH_DIR.parent)}",
        f"command: {' '.join([Path(sys.executable).name, *sys.argv])}",
        f"settings: TTLs (job, dead-letter, idempotency) {options.ttl} s, retry delay {RETRY_DELAY_SECONDS} s, "
        f"{options.workers} worker(s) x concurrency {options.concurrency}, prefix/queue {run.tag}, "
        f"QUEUE_RECOVERY_SECONDS {run.settings.queue_recovery_seconds} (janitor sweep every "
        f"{run.settings.janitor_interval:g} s), "
        f"warm-up {options.warmup:,} jobs",
        "",
        "mix (dispatch steps by kind): " + ", ".join(f"{k} {n:,}" for k, n in sorted(result.kinds.items())),
        f"jobs created: {result.created:,}",
        "outcomes:",
        *(f"    {name}: {n:,}" for name, n in sorted(result.outcomes.items())),
        "final statuses seen by the tracker:",
        *(f"    {name}: {n:,}" for name, n in sorted(result.seen.items())),
        "",
        f"time: dispatch {result.dispatch_seconds:.1f} s, all finished {result.done_seconds:.1f} s after the first "
        f"dispatch, keys gone {result.expiry_seconds:.1f} s after the last finished; whole run {wall:.0f} s",
    ]


def render(run: Run, result: RoundResult, shots: dict[str, Snapshot], peak: tuple[int, int], wall: float) -> str:
    empty, cold, warm, after, stopped = (shots[name] for name in ("empty", "cold", "warm", "after", "stopped"))
    leftover = sorted(k for k in set(after.keys) - set(warm.keys) if not kept(k, run.keys))
    lines = [
        *run_lines(run, result, wall),
        f"peak keys during the run: {peak[1]:,}",
        "",
        "memory (bytes; empty: before the workers started, stopped: after they stopped):",
        *memory_lines([empty, cold, warm, after, stopped], peak[0]),
        unbounded_line(warm, after) + "   <- the verdict",
        delta_line(NET, warm, after) + " (bounded-by-design keys included)",
        delta_line(NO_QUERY_BUFFERS, warm, after),
        delta_line("used_memory", warm, after) + " (median readings)",
        delta_line(NET, cold, after),
        delta_line(NET, empty, stopped),
        "",
        "connections, warm -> after:",
        *connection_lines(warm, after),
        "slow log between the warm baseline and the end:",
        *slow_lines(after),
        "what changed between the warm baseline and the end (MEMORY STATS, MEMORY USAGE, cached scripts):",
        *changed_stats(warm, after),
        "what the warm-up changed (cold -> warm):",
        *changed_stats(cold, warm),
        "",
        "per-job observation keys once the jobs expired (must be none): "
        + ", ".join(f"{name} {n:,}" for name, n in per_job_left(after, run.keys).items()),
        "keys bounded by design, at the warm baseline (left out of the leftovers and of the memory verdict):",
        *bounded_lines(warm.bounded, run.tag),
        "keys bounded by design, once the jobs expired:",
        *bounded_lines(after.bounded, run.tag),
        "keys bounded by design, once the workers had stopped:",
        *bounded_lines(stopped.bounded, run.tag),
        "",
        "keys at the warm baseline (by pattern):",
        *key_table(warm.keys, run.tag, warm.keys),
        "keys left over (not in the warm baseline; live worker heartbeats, janitor lease and keys bounded by design "
        "excepted):",
        *key_table(leftover, run.tag, after.keys),
        "keys not in the cold baseline (what the warm-up left):",
        *key_table(sorted(set(warm.keys) - set(cold.keys)), run.tag, warm.keys),
        "keys once the workers had stopped:",
        *key_table(stopped.keys, run.tag, stopped.keys),
    ]
    return "\n".join(lines)


def verdict(run: Run, shots: dict[str, Snapshot]) -> list[str]:
    cold, warm, after = shots["cold"], shots["warm"], shots["after"]
    failures = []
    leftover = [k for k in set(after.keys) - set(warm.keys) if not kept(k, run.keys)]
    if leftover:
        failures.append(f"{len(leftover):,} key(s) left over")
    warmup_left = [k for k in set(warm.keys) - set(cold.keys) if not kept(k, run.keys)]
    if warmup_left:
        failures.append(f"{len(warmup_left):,} key(s) left over by the warm-up")
    delta = after.unbounded - warm.unbounded
    if delta > run.options.limit_kib * 1024:
        failures.append(f"{UNBOUNDED} grew by {kib(delta)} (limit {run.options.limit_kib} KiB)")
    failures += [
        f"{row.key}: {row.length}, TTL {row.ttl} s, over its bound ({row.bound})" for row in after.bounded if not row.ok
    ]
    per_job = per_job_left(after, run.keys)
    if any(per_job.values()):
        failures.append("per-job keys left: " + ", ".join(f"{name} {n:,}" for name, n in per_job.items() if n))
    return failures


def per_job_left(shot: Snapshot, keys: Keys) -> dict[str, int]:
    """The per-job observation keys still there: listing indexes and jobs' own event streams."""
    listing = sum(1 for key in shot.keys if key.startswith(keys.listed("")))
    streams = sum(1 for key in shot.keys if key.startswith(keys.events("")))
    return {"listing indexes (list:*)": listing, "job event lists (events:<id>)": streams}


def unbounded_line(before: Snapshot, after: Snapshot) -> str:
    delta = after.unbounded - before.unbounded
    taken = f"{bounded_memory(before.bounded):,} and {bounded_memory(after.bounded):,} bytes taken off"
    return f"    {UNBOUNDED}, {after.label} - {before.label}: {delta:+,} bytes ({kib(delta)}; {taken})"


def measure(run: Run) -> tuple[str, list[str]]:
    started = time.monotonic()
    shots = {"empty": run.take("empty")}
    progress(f"Redis for this run: {run.url}; starting {run.options.workers} worker(s)")
    run.start_workers()
    shots["cold"] = run.take("cold")
    sampler = Sampler(run.clients[1])
    sampler.start()
    run.stack.callback(sampler.stop)
    if run.options.warmup:
        progress(f"warm-up: {run.options.warmup:,} jobs")
        warm_round = run.run_round(run.options.warmup, "warmup", sampler)
        run.expire(shots["cold"], warm_round, settle=False)
    shots["warm"] = run.take("warm")
    sampler.reset()
    progress(f"dispatching {run.options.jobs:,} jobs ({len(shots['warm'].keys)} keys, {kib(shots['warm'].used)})")
    result = run.run_round(run.options.jobs, "run", sampler)
    progress(f"every job finished after {result.done_seconds:.1f} s; waiting for keys to expire")
    run.expire(shots["warm"], result)
    shots["after"] = run.take("after")
    peak = (sampler.peak_used, sampler.peak_keys)
    sampler.stop()
    progress("stopping the workers (SIGTERM)")
    for service in run.workers:
        service.stop()
    shots["stopped"] = run.take("stopped")
    text = render(run, result, shots, peak, time.monotonic() - started)
    return text, verdict(run, shots)


# Main -----------------------------------------------------------------------------


def parse_options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, help="jobs to dispatch (default 100000; 2000 with --quick)")
    parser.add_argument("--quick", action="store_true", help="2,000 jobs, a 100-job warm-up")
    parser.add_argument("--warmup", type=int, help="warm-up jobs before the baseline (default 300; 0: none)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--concurrency", type=int, default=2, help="pool processes per worker (default 2)")
    parser.add_argument("--ttl", type=int, default=TTL_SECONDS, help="job, dead-letter and idempotency TTL (s)")
    parser.add_argument("--limit-kib", type=int, default=64, help="allowed used_memory growth (default 64 KiB)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, AOF)")
    parser.add_argument("--recovery", type=int, help="QUEUE_RECOVERY_SECONDS of the workers (default: the default, 60)")
    args = parser.parse_args(argv)
    jobs = args.jobs if args.jobs is not None else (2_000 if args.quick else 100_000)
    warmup = args.warmup if args.warmup is not None else (100 if args.quick else 300)
    if jobs < 1 or warmup < 0 or args.workers < 1 or args.concurrency < 1 or args.ttl < 1:
        parser.error("--jobs, --workers, --concurrency and --ttl must be positive; --warmup 0 or more")
    return Options(jobs, warmup, args.workers, args.concurrency, args.ttl, args.limit_kib, args.keep, args.recovery)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("\nstopping everything this run started...", file=sys.stderr, flush=True)
    raise KeyboardInterrupt


@contextmanager
def logs_on_error(run: Run) -> Iterator[None]:
    try:
        yield
    except Exception:
        for service in run.workers:
            print(f"\n--- last lines of {service.name}'s log ---\n{service.log_tail()}", file=sys.stderr)
        raise


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    scrub_settings_env()
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with ExitStack() as stack:
            run = Run(options, stack)
            with logs_on_error(run):
                text, failures = measure(run)
                print(text, flush=True)
            if options.keep:
                progress(f"scratch directory kept: {run.work_dir}")
    except KeyboardInterrupt:
        print("interrupted; everything this run started has been stopped", file=sys.stderr)
        return 130
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\nverdict: " + ("PASS" if not failures else "FAIL: " + "; ".join(failures)), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
