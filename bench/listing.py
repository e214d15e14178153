"""The job listing with a million records: a filtered page costs the same as with 100,000.

    .venv/bin/python bench/listing.py                      # 100,000 then 1,000,000 records (about 15 minutes)
    .venv/bin/python bench/listing.py --quick              # 10,000 then 100,000 records, 20 runs (2-3 minutes)
    .venv/bin/python bench/listing.py --records 300000     # 100,000 then 300,000

`GET /api/queue/jobs` walks one listing index (observe/listing.py), never the keyspace, so
a page should cost the same whatever the number of records. The run starts its own Redis
(never an existing one; its AOF switched off, since only reads are timed), fills it
through the real create and cancel scripts (bench/listing_fill.py says with what), and at
each size (first the smaller, then the fill carries on to --records):

1. times each query of QUERIES --runs times through `list_jobs` itself (median, p99, max),
   counting the Redis commands one page costs (INFO commandstats deltas / runs);
2. the same through the real FastAPI app (httpx's ASGITransport, the app's lifespan
   running, as tests/conftest.py `api_client` does), checking it answers the same page.

The verdict: at the larger size, no query's page costs more than 1.5x the Redis commands
it did at the smaller one, and no median page time is more than 3x (or 5 ms above) the
smaller size's, while the records grew tenfold. Two are held to fixed bounds instead: a
search by id prefix (at most PREFIX_MATCHES ids, plus the page) and, when it did not reach
the scan budget at the smaller size, the query that walks it. The markdown report is printed and written under
bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import httpx
import redis
import redis.asyncio
from pydantic import SecretStr

import listing_report
from listing_fill import Filler
from pocketqueue.api.app import create_app
from pocketqueue.config import Settings
from pocketqueue.jobs.keys import Keys
from pocketqueue.jobs.models import JobStatus
from pocketqueue.observe.listing import JobQuery, encode_cursor, list_jobs
from procs import ServiceError, scratch, write_report
from run import progress, scrub_settings_env

BENCH_DIR = Path(__file__).resolve().parent
WARMUP_RUNS = 3
DEEP_PAGE = 100


@dataclass(frozen=True)
class Options:
    sizes: tuple[int, ...]
    runs: int
    keep: bool


@dataclass(frozen=True)
class Named:
    """One query of the run: a short name, what it asks, and the query."""

    name: str
    what: str
    query: JobQuery


@dataclass
class Timed:
    """A query's runs at one size, one way (direct call or HTTP)."""

    seconds: list[float]
    commands: dict[str, float]  # Redis commands per page, by name
    jobs: int  # jobs on the page
    cursor: bool  # whether the page had a next_cursor

    @property
    def median_ms(self) -> float:
        return statistics.median(self.seconds) * 1000

    @property
    def p99_ms(self) -> float:
        ordered = sorted(self.seconds)
        return ordered[max(0, -(-len(ordered) * 99 // 100) - 1)] * 1000

    @property
    def total_commands(self) -> float:
        return sum(self.commands.values())


@dataclass
class SizeResult:
    """Everything measured at one number of records."""

    records: int
    cancelled: int
    fill_seconds: float  # to fill from the previous size to this one
    memory: dict[str, int]  # used_memory, dbsize, MEMORY USAGE of a few indexes
    direct: dict[str, Timed]
    http: dict[str, Timed]
    mismatches: list[str]  # queries whose HTTP page differed from the direct one


# Queries --------------------------------------------------------------------------


def queries(client: redis.Redis, keys: Keys, records: int) -> list[Named]:
    """The queries to time, their targets (a rare book, an id prefix) taken from the records."""
    middle = str(client.zrevrange(keys.listed("all"), records // 2, records // 2)[0])
    book = next(
        str(i // 5) for i in range(records // 2, records) if client.exists(keys.listed("tag", f"book_id={i // 5}"))
    )
    idem = next(f"order-{i}" for i in range(records // 2, records) if i % 100 == 37)
    newest = float(client.zrevrange(keys.listed("all"), 0, 0, withscores=True)[0][1])
    middle_row = client.zrevrange(keys.listed("all"), records // 2, records // 2, withscores=True)[0]
    queued, cancelled = (JobStatus.QUEUED,), (JobStatus.CANCELLED,)
    return [
        Named("all", "no filter", JobQuery()),
        Named("all-500", "no filter, limit=500", JobQuery(limit=500)),
        Named("queued", "status=queued", JobQuery(statuses=queued)),
        Named("queued+scheduled", "status=queued&status=scheduled", JobQuery(statuses=(*queued, JobStatus.SCHEDULED))),
        Named("task", "task=book.ocr", JobQuery(task="book.ocr")),
        Named("tag-rare", f"tag=book_id:{book} (5 jobs or fewer)", JobQuery(tags=(("book_id", book),))),
        Named("tag+status", "tag=tenant:acme&status=queued", JobQuery(statuses=queued, tags=(("tenant", "acme"),))),
        Named(
            "tag+status-sparse",
            "tag=tenant:initech&status=cancelled",
            JobQuery(statuses=cancelled, tags=(("tenant", "initech"),)),
        ),
        Named("q-id", "q=<a job id>", JobQuery(q=middle)),
        Named("q-prefix4", f"q={middle[:4]} (id prefix)", JobQuery(q=middle[:4])),
        # The shortest prefix still answered at a million records (about 244 ids start with
        # any 3 hex digits; 2 digits start about 3,900, past the 500 a search may order: 422).
        Named("q-prefix3", f"q={middle[:3]} (id prefix)", JobQuery(q=middle[:3])),
        Named("q-idempotency", f"q={idem} (idempotency key)", JobQuery(q=idem)),
        Named(
            "window",
            "created_after/before: a 1-minute window 4 minutes back",
            JobQuery(created_after=newest - 300, created_before=newest - 240),
        ),
        Named("page-100", f"no filter, cursor of page {DEEP_PAGE}", JobQuery()),  # cursor filled in by deep_cursor
        Named(
            "cursor-middle",
            "no filter, cursor at the middle of all jobs",
            JobQuery(cursor=encode_cursor((float(middle_row[1]), str(middle_row[0])))),
        ),
        Named(
            "budget",
            "task=book.ocr&tag=tenant:globex (matches nothing: walks the scan budget)",
            JobQuery(task="book.ocr", tags=(("tenant", "globex"),)),
        ),
        Named("tag-common", "tag=tenant:acme", JobQuery(tags=(("tenant", "acme"),))),
    ]


async def deep_cursor(client: redis.asyncio.Redis, keys: Keys, pages: int) -> str:
    """The cursor a client holds after reading `pages - 1` pages of 50, newest first."""
    query = JobQuery()
    for _ in range(pages - 1):
        page = await list_jobs(client, keys, query)
        assert page.next_cursor is not None
        query = replace(query, cursor=page.next_cursor)
    assert query.cursor is not None
    return query.cursor


# Timing ---------------------------------------------------------------------------


def command_counts(client: redis.Redis) -> Counter[str]:
    stats = client.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(values["calls"]) for name, values in stats.items()})


Call = Callable[[], Awaitable[tuple[int, bool]]]  # one page: (jobs on it, whether it has a next_cursor)


async def timed(client: redis.Redis, runs: int, call: Call) -> Timed:
    """`call` WARMUP_RUNS times untimed, then `runs` times timed, with the commands it cost."""
    for _ in range(WARMUP_RUNS):
        jobs, cursor = await call()
    before = command_counts(client)
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        jobs, cursor = await call()
        seconds.append(time.perf_counter() - started)
    spent = command_counts(client) - before
    spent.pop("info", None)  # our own readings
    commands = {name: count / runs for name, count in spent.items()}
    return Timed(seconds, commands, jobs, cursor)


def direct_call(client: redis.asyncio.Redis, keys: Keys, query: JobQuery) -> Call:
    async def call() -> tuple[int, bool]:
        page = await list_jobs(client, keys, query)
        return len(page.jobs), page.next_cursor is not None

    return call


def http_params(query: JobQuery) -> list[tuple[str, str | int | float | bool | None]]:
    params: list[tuple[str, str | int | float | bool | None]] = [("limit", query.limit)]
    params += [("status", status.value) for status in query.statuses]
    params += [("tag", f"{name}:{value}") for name, value in query.tags]
    if query.task:
        params.append(("task", query.task))
    if query.q:
        params.append(("q", query.q))
    for name, stamp in (("created_after", query.created_after), ("created_before", query.created_before)):
        if stamp is not None:
            params.append((name, datetime.fromtimestamp(stamp, UTC).isoformat()))
    if query.cursor:
        params.append(("cursor", query.cursor))
    return params


class HttpPage:
    """GET /api/queue/jobs through the app, read back as a page (job ids and cursor only)."""

    def __init__(self, http: httpx.AsyncClient, query: JobQuery) -> None:
        self.http = http
        self.params = http_params(query)
        self.ids: list[str] = []

    async def __call__(self) -> tuple[int, bool]:
        response = await self.http.get("/api/queue/jobs", params=self.params)
        if response.status_code != 200:
            raise ServiceError(f"GET /api/queue/jobs {self.params} answered {response.status_code}: {response.text}")
        body = response.json()
        self.ids = [job["job_id"] for job in body["jobs"]]
        return len(self.ids), body["next_cursor"] is not None


async def measure_size(scene: Scene, runs: int) -> tuple[dict[str, Timed], dict[str, Timed], list[str]]:
    client = redis.asyncio.Redis.from_url(scene.url, decode_responses=True)
    try:
        named = queries(scene.redis, scene.keys, scene.filler.written)
        cursor = await deep_cursor(client, scene.keys, DEEP_PAGE)
        named = [replace(n, query=replace(n.query, cursor=cursor)) if n.name == "page-100" else n for n in named]
        direct: dict[str, Timed] = {}
        for each in named:
            direct[each.name] = await timed(scene.redis, runs, direct_call(client, scene.keys, each.query))
            progress(f"  {each.name:18} {direct[each.name].median_ms:8.2f} ms median  ({each.what})")
        expected = {n.name: [job.job_id for job in (await list_jobs(client, scene.keys, n.query)).jobs] for n in named}
    finally:
        await client.aclose()
    app = create_app(scene.settings)
    http: dict[str, Timed] = {}
    mismatches = []
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pq") as api,
    ):
        for each in named:
            page = HttpPage(api, each.query)
            http[each.name] = await timed(scene.redis, runs, page)
            if page.ids != expected[each.name]:
                mismatches.append(each.name)
    scene.named = named
    return direct, http, mismatches


# The run --------------------------------------------------------------------------


class Scene:
    """The scratch Redis, our client, the keys and the filler; all stopped on exit."""

    def __init__(self, options: Options, stack: ExitStack) -> None:
        place = scratch(stack, "listing", options.keep)
        self.work_dir, self.url = place.work_dir, place.url
        self.redis = redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=300)
        stack.callback(self.redis.close)
        # Only reads are timed: an AOF of a few GB (and its rewrites) would only slow the fill.
        self.redis.config_set("appendonly", "no")
        self.tag = f"pqlist-{uuid.uuid4().hex[:6]}"
        self.keys = Keys(self.tag)
        self.settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            redis_url=SecretStr(self.url),
            data_dir=self.work_dir / "var",
            task_modules=[],
            log_level="WARNING",
            queue_name=self.tag,
            queue_key_prefix=self.tag,
        )
        self.filler = Filler(self.url, self.keys, max(options.sizes))
        self.named: list[Named] = []

    def memory(self) -> dict[str, int]:
        figures = {"used_memory": int(self.redis.info("memory")["used_memory"]), "keys": int(self.redis.dbsize())}
        listed = [
            self.keys.listed(*part) for part in (("all",), ("ids",), ("task", "book.ocr"), ("tag", "tenant=acme"))
        ]
        for index in [*listed, self.keys.index("queued")]:
            figures[index.removeprefix(f"{self.tag}:")] = int(self.redis.memory_usage(index) or 0)
            figures[f"{index.removeprefix(f'{self.tag}:')} entries"] = int(self.redis.zcard(index))
        return figures


def run_sizes(options: Options, scene: Scene) -> list[SizeResult]:
    results = []
    for size in options.sizes:
        progress(f"filling to {size:,} records (create.lua, cancel.lua, {scene.filler.written:,} so far)")

        def report(written: int, seconds: float) -> None:
            progress(f"  {written:,} records, {seconds:.0f} s")

        fill_seconds = scene.filler.fill_to(size, report)
        memory = scene.memory()
        progress(f"{size:,} records: used_memory {memory['used_memory'] / 1024**2:,.0f} MiB; timing the queries")
        direct, http, mismatches = asyncio.run(measure_size(scene, options.runs))
        results.append(SizeResult(size, scene.filler.cancelled, fill_seconds, memory, direct, http, mismatches))
    return results


def parse_options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, help="records at the end (default 1,000,000; 100,000 with --quick)")
    parser.add_argument("--quick", action="store_true", help="10,000 then 100,000 records, 20 runs per query")
    parser.add_argument("--runs", type=int, help="timed runs per query and size (default 100; 20 with --quick)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (Redis log)")
    args = parser.parse_args(argv)
    records = args.records if args.records is not None else (100_000 if args.quick else 1_000_000)
    runs = args.runs if args.runs is not None else (20 if args.quick else 100)
    if records < 60_000 or runs < 1:  # the smaller size needs page 100 (of 50) to exist
        parser.error("--records must be at least 60,000 and --runs positive")
    smaller = records // 10 if args.quick or records <= 100_000 else 100_000
    return Options((smaller, records), runs, args.keep)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("\nstopping everything this run started...", file=sys.stderr, flush=True)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    scrub_settings_env()
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    try:
        with ExitStack() as stack:
            scene = Scene(options, stack)
            progress(f"Redis for this run: {scene.url} (AOF off), prefix {scene.tag}")
            results = run_sizes(options, scene)
            text, failures = listing_report.render(options, scene.named, results, time.monotonic() - started)
            if options.keep:
                progress(f"scratch directory kept: {scene.work_dir}")
    except KeyboardInterrupt:
        print("interrupted; everything this run started has been stopped", file=sys.stderr)
        return 130
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return write_report("listing", text, failures)


if __name__ == "__main__":
    sys.exit(main())
