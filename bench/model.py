"""What a benchmark run is configured with, what it runs against, and what it found."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, replace
from typing import Any

from loadgen import LoadResult
from plain_celery import NOOP
from wrk import WrkResult

PQ_TASK = "pocketqueue.debug"
PQ_DISPATCH = "/api/queue/dispatch"
PHASES = ("dispatch", "dispatch-key", "delay", "latency", "drain", "drain-async", "drain-flow", "soak")


@dataclass(frozen=True)
class Options:
    clients: int = 64
    warmup: float = 3.0
    duration: float = 15.0
    samples: int = 300
    latency_warmup: int = 20
    drain_jobs: int = 10_000
    drain_timeout: float = 300.0
    delay_jobs: int = 5_000  # per run of in-process `.delay()`
    delay_runs: int = 3
    dispatch_key_runs: int = 3  # each a run without a key, then one with (~25 s a pair)
    drain_async_runs: int = 1  # each an async then a sync no-op drain (~1.5 min); 3 for a median
    soak: int = 200_000
    soak_seconds: float = 900.0  # a safety bound: 200,000 dispatches took 4.5-7.5 min on 2 cores
    naive_soak: int = 200_000
    naive_soak_seconds: float = 30.0  # the naive soak is a contrast, not a target: kept short
    rss_interval: float = 2.0
    use_wrk: bool = True
    wrk_seconds: float = 5.0  # the wrk cross-check is shorter, to keep the run under ~10 minutes
    phases: tuple[str, ...] = PHASES
    quick: bool = False

    @classmethod
    def smoke(cls) -> Options:
        """`--quick`: small counts and short runs, to check the benchmark itself works."""
        return cls(
            quick=True,
            warmup=1.0,
            duration=5.0,
            samples=50,
            latency_warmup=5,
            drain_jobs=1_000,
            delay_jobs=1_000,
            soak=10_000,
            soak_seconds=60.0,
            naive_soak=5_000,
            naive_soak_seconds=15.0,
            rss_interval=1.0,
            use_wrk=False,
        )


@dataclass(frozen=True)
class Target:
    """An HTTP API under test: how to start it and what to POST to it."""

    name: str
    label: str
    path: str
    body: dict[str, Any]
    ready_path: str
    naive: bool
    headers: tuple[tuple[str, str], ...] = ()  # sent with every request
    env: tuple[tuple[str, str], ...] = ()  # the API's settings beyond the defaults


PQ_TARGET = Target(
    "pocketqueue", "PocketQueue API", PQ_DISPATCH, {"task": PQ_TASK, "kwargs": {}}, "/api/queue/tasks", False
)
# The API with keys configured (three, as a small deployment has), each request with the
# write key: the cost of checking a key on every dispatch.
BENCH_KEY = "bench-write-key-0123456789abcdef"
PQ_KEY_TARGET = replace(
    PQ_TARGET,
    name="pocketqueue_key",
    label="PocketQueue API, with an API key",
    ready_path="/openapi.json",
    headers=(("Authorization", f"Bearer {BENCH_KEY}"),),
    env=(
        ("QUEUE_API_KEYS", f"dash:read:bench-read-key-0123456789,web:write:{BENCH_KEY},ops:admin:bench-admin-key-0123"),
    ),
)
NAIVE_TARGET = Target(
    "naive", "naive FastAPI `def` + `apply_async`", "/dispatch", {"task": NOOP, "kwargs": {}}, "/health", True
)
NAIVE_ASYNC_TARGET = replace(
    NAIVE_TARGET, name="naive_async", label="naive FastAPI `async def` + `apply_async`", path="/dispatch-async"
)


@dataclass
class DispatchRun:
    target: Target
    result: LoadResult
    api_cpu: float  # fraction of one core the API process used while measured
    redis_cpu: float
    loadgen_cpu: float
    wrk: WrkResult | None = None


@dataclass
class DrainRun:
    jobs: int
    enqueue_seconds: float
    done_at_ready: int
    seconds: float

    @property
    def rate(self) -> float:
        return (self.jobs - self.done_at_ready) / self.seconds if self.seconds > 0 else 0.0


@dataclass
class DelayRun:
    """In-process dispatch from one thread: jobs/s of each run."""

    label: str
    jobs: int
    rates: list[float]
    redis_us: list[float]  # CPU time of Redis's main thread per job (INFO cpu), each run

    @property
    def median(self) -> float:
        return statistics.median(self.rates) if self.rates else 0.0


@dataclass
class SoakRun:
    target: Target
    requested: int
    result: LoadResult
    samples: list[tuple[int, float, int]]  # (requests done, seconds, API RSS KiB)

    @property
    def capped(self) -> bool:
        return self.result.requests < self.requested


@dataclass
class Results:
    options: Options
    dispatch: dict[str, DispatchRun] = field(default_factory=dict)
    latency: dict[str, list[float]] = field(default_factory=dict)
    drain: dict[str, DrainRun] = field(default_factory=dict)
    soak: dict[str, SoakRun] = field(default_factory=dict)
    delay: dict[str, DelayRun] = field(default_factory=dict)
    drain_async: dict[str, list[DrainRun]] = field(default_factory=dict)  # "async" and "sync" runs
    drain_flow: dict[str, list[DrainRun]] = field(default_factory=dict)  # "flow" and "sync" runs
    dispatch_key: dict[str, list[DispatchRun]] = field(default_factory=dict)  # without and with a key
    code: tuple[str, str] = ("", "")  # code_version() when the run started, and when it ended
    # Per phase: the share of the machine's CPU used by processes this run did not start.
    other_cpu: dict[str, float] = field(default_factory=dict)
