"""`python -m pocketqueue stats | jobs | inspect | monitor`: the queue, seen from a terminal.

They read Redis directly (the server REDIS_URL names, or the local one under DATA_DIR),
through the same readers as the API (pocketqueue.observe), so a terminal and the API
never disagree. None of them changes anything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from rich.console import Console

from pocketqueue.config import Settings
from pocketqueue.errors import InvalidRequest
from pocketqueue.jobs.keys import Keys
from pocketqueue.jobs.models import JobStatus, decode_record
from pocketqueue.observe.listing import MAX_LIMIT, JobQuery, list_jobs
from pocketqueue.observe.position import queue_positions
from pocketqueue.observe.stats import read_stats
from pocketqueue.terminal import views

JOBS_HELP = """List jobs, newest first, with the filters GET /api/queue/jobs takes (they combine).
When more match than --limit, the last line gives the --cursor of the next page."""

TIME_HELP = "exclusive; ISO 8601 (no offset: UTC) or seconds since the epoch"


def add_commands(commands: Any) -> None:
    """Add the terminal subcommands to the `add_subparsers()` object `commands`."""
    stats = commands.add_parser("stats", help="queue depth, jobs per status, throughput, run times (a table)")
    stats.add_argument("--json", action="store_true", help="print GET /api/queue/stats's JSON instead")
    stats.set_defaults(handler=show_stats)

    jobs = commands.add_parser("jobs", help="list and search jobs", description=JOBS_HELP)
    jobs.add_argument("--status", action="append", choices=[s.value for s in JobStatus], help="repeatable")
    jobs.add_argument("--task", metavar="NAME")
    jobs.add_argument("--tag", action="append", metavar="NAME:VALUE", help="repeatable; all must match")
    jobs.add_argument("-q", metavar="TEXT", help="a job id, id prefix, idempotency or unique key")
    jobs.add_argument("--created-after", metavar="TIME", type=_epoch, help=TIME_HELP)
    jobs.add_argument("--created-before", metavar="TIME", type=_epoch, help=TIME_HELP)
    jobs.add_argument("--limit", type=int, default=50, help=f"1 to {MAX_LIMIT} (default 50)")
    jobs.add_argument("--cursor", help="the cursor the last page ended with")
    jobs.add_argument("--json", action="store_true", help="print the page as JSON instead")
    jobs.set_defaults(handler=show_jobs)

    inspect = commands.add_parser("inspect", help="one job: its record, attempts and errors")
    inspect.add_argument("job_id", metavar="JOB_ID")
    inspect.add_argument("--json", action="store_true", help="print the record as JSON instead")
    inspect.set_defaults(handler=show_job)

    monitor = commands.add_parser("monitor", help="a live full-screen view of the queue (Ctrl-C quits)")
    monitor.add_argument("--interval", type=float, default=1.0, metavar="SECONDS", help="redraw every (default 1)")
    monitor.set_defaults(handler=run_monitor)


def _epoch(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither an ISO 8601 time nor epoch seconds") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[tuple[Redis, Keys]]:
    """A Redis client for one command (checked first, so an unreachable server is one clear line)."""
    from pocketqueue.cli import require_redis  # the CLI imports this module

    url = require_redis(settings)
    redis = Redis.from_url(url, decode_responses=True, socket_connect_timeout=2, socket_timeout=10)
    try:
        yield redis, Keys(settings.queue_key_prefix)
    finally:
        await redis.aclose()


def console() -> Console:
    # soft_wrap off and no width cap beyond the terminal's: long ids fold inside their column.
    return Console(highlight=False)


def show_stats(settings: Settings, args: argparse.Namespace) -> int:
    async def read() -> Any:
        async with connect(settings) as (redis, keys):
            return await read_stats(redis, keys, settings.queue_name)

    stats = asyncio.run(read())
    if args.json:
        print(stats.model_dump_json(indent=2))
    else:
        console().print(views.stats_view(stats))
    return 0


def show_jobs(settings: Settings, args: argparse.Namespace) -> int:
    query = JobQuery(
        statuses=tuple(JobStatus(status) for status in args.status or ()),
        task=args.task,
        tags=tuple(_tag(text) for text in args.tag or ()),
        q=args.q,
        created_after=args.created_after,
        created_before=args.created_before,
        limit=args.limit,
        cursor=args.cursor,
    )

    async def read() -> Any:
        async with connect(settings) as (redis, keys):
            return await list_jobs(redis, keys, query)

    page = asyncio.run(read())
    if args.json:
        jobs = [job.model_dump(mode="json") for job in page.jobs]
        print(json.dumps({"jobs": jobs, "next_cursor": page.next_cursor}, indent=2))
        return 0
    out = console()
    out.print(views.jobs_table(page.jobs))
    more = f"; next page: --cursor '{page.next_cursor}'" if page.next_cursor else ""
    out.print(f"{len(page.jobs)} job(s){more}")
    return 0


def _tag(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not (name and colon and value):
        raise InvalidRequest(f"--tag {text[:80]!r} must be name:value")
    return name, value


def show_job(settings: Settings, args: argparse.Namespace) -> int:
    async def read() -> Any:
        async with connect(settings) as (redis, keys):
            job = decode_record(args.job_id, await redis.hgetall(keys.job(args.job_id)))
            found = [job] if job is not None else []
            positions = await queue_positions(redis, keys, found, settings.queue_name)
            return job, positions.get(args.job_id)

    job, position = asyncio.run(read())
    if job is None:
        print(f"pocketqueue: no job with id {args.job_id!r} (never created, or expired)")
        return 1
    if args.json:
        shown = job.model_dump(mode="json")
        if position is not None:
            shown.update(queue_position=position.ahead, estimated_start_seconds=position.estimated_start_seconds)
        print(json.dumps(shown, indent=2))
    else:
        console().print(views.job_view(job, position))
    return 0


def run_monitor(settings: Settings, args: argparse.Namespace) -> int:
    from pocketqueue.terminal.monitor import monitor

    if args.interval <= 0:
        raise InvalidRequest("--interval must be a positive number of seconds")
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how one leaves it; Live restored the screen
        asyncio.run(monitor(settings, args.interval))
    return 0
