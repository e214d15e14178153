"""`python -m pocketqueue retry-failed | clear`: an operator's commands on the queue's jobs.

Both change job records, so both go through the same Lua transitions as the API: a
re-drive is JobRedriveNode (pocketqueue.flows.create_redrive_flow), a clear is JobStore.clear.
They talk to Redis directly and need no API key; the audit trail names them `cli:<user>`.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING, Any

from pocketqueue.config import Settings
from pocketqueue.errors import QueueError, RedisUnavailable
from pocketqueue.jobs.keys import Keys, queue_lists
from pocketqueue.observe import audit

if TYPE_CHECKING:
    from pocketqueue.runtime import QueueRuntime

RETRY_HELP = """Re-drive failed (dead-lettered) jobs: each is queued again under the same id, with
its attempts and errors reset. Exits 0 when every job asked for was re-driven (or --all
found nothing to do), 1 when a --job-id was not (not failed, missing, or its unique key is
held by another active job)."""

CLEAR_HELP = """Empty a queue: remove every message waiting in its lists (all three priorities) and
cancel those jobs, so no record waits for a message that is gone. For the configured
QUEUE_NAME, scheduled and retrying jobs are cancelled too. Running jobs are not touched, nor
are messages a worker has already taken (prefetched). Without --confirm, only says what it
would remove."""


class UsageError(QueueError):
    """Options that cannot go together (reported like every other error: exit 2)."""


def add_commands(commands: Any) -> None:
    """Add the admin subcommands to the `add_subparsers()` object `commands`."""
    retry = commands.add_parser("retry-failed", help="re-drive failed jobs", description=RETRY_HELP)
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every job in the dead-letter set")
    which.add_argument("--job-id", dest="job_ids", action="append", metavar="ID", help="this job (repeatable)")
    retry.add_argument("--task", metavar="NAME", help="with --all: only the failed jobs of this task")
    retry.set_defaults(handler=retry_failed)

    clear = commands.add_parser("clear", help="empty a queue, cancelling its waiting jobs", description=CLEAR_HELP)
    clear.add_argument("--queue", required=True, metavar="NAME", help="the queue to empty (e.g. QUEUE_NAME)")
    clear.add_argument("--confirm", action="store_true", help="really do it")
    clear.set_defaults(handler=clear_queue)


def retry_failed(settings: Settings, args: argparse.Namespace) -> int:
    from pocketqueue.cli import require_redis

    if args.task is not None and args.job_ids:
        raise UsageError("--task filters --all; with --job-id, name the jobs themselves")
    job_ids = list(dict.fromkeys(args.job_ids)) if args.job_ids else None  # each id once
    require_redis(settings)
    redriven, skipped = asyncio.run(_redrive(settings, job_ids, args.task))
    for job_id in redriven:
        print(f"re-driven  {job_id}")
    for job_id, why in skipped.items():
        print(f"skipped    {job_id}: {_why(why)}")
    if job_ids is None and not redriven and not skipped:
        print("nothing to re-drive: no failed jobs" + (f" of task {args.task!r}" if args.task else ""))
        return 0
    print(f"re-drove {len(redriven)} job(s) onto queue {settings.queue_name!r}; skipped {len(skipped)}")
    # With --all a job skipped as missing or no longer failed left the dead-letter set on
    # its own (expired, or re-driven meanwhile); one skipped for its unique key is still failed.
    stuck = skipped if job_ids is not None else {k: v for k, v in skipped.items() if v.startswith("unique:")}
    return 1 if stuck else 0


async def _redrive(settings: Settings, job_ids: list[str] | None, task: str | None) -> tuple[list[str], dict[str, str]]:
    from pocketqueue.flows import create_redrive_flow
    from pocketqueue.nodes import RedriveFilter
    from pocketqueue.runtime import open_runtime

    redriven: list[str] = []
    skipped: dict[str, str] = {}
    cursor = None
    async with open_runtime(settings) as runtime:
        while True:  # a bulk re-drive goes MAX_SCAN dead letters at a time
            wanted = RedriveFilter(job_ids=job_ids, task=task, cursor=cursor)
            shared: dict[str, Any] = {"runtime": runtime, "redrive": wanted}
            if await create_redrive_flow().run_async(shared) == "unavailable":
                done = f"{len(redriven)} re-driven before that" if redriven else "nothing was re-driven"
                raise RedisUnavailable(f"Redis did not answer ({shared.get('redis_error')}); {done}.")
            report = shared["report"]
            redriven += report.redriven
            skipped.update(report.skipped)
            if report.next_cursor is None:
                break
            cursor = report.next_cursor
        await _audited(runtime, "retry_dead_letters", redriven)
    return redriven, skipped


def _why(reason: str) -> str:
    if reason == "missing":
        return "missing (never created, or expired)"
    if reason.startswith("unique:"):
        return f"job {reason.removeprefix('unique:')} holds its unique key and has not finished"
    return f"{reason}, not failed (only failed jobs can be re-driven)"


def clear_queue(settings: Settings, args: argparse.Namespace) -> int:
    from pocketqueue.cli import require_redis

    if not args.queue:
        raise UsageError("--queue must name a queue")
    require_redis(settings)
    with_schedule = args.queue == settings.queue_name
    if not args.confirm:
        counts, scheduled = asyncio.run(_count(settings, args.queue, with_schedule))
        lists = ", ".join(f"{name} {count}" for name, count in counts.items())
        also = f" and cancel {scheduled} scheduled or retrying job(s)" if with_schedule else ""
        raise UsageError(
            f"clear would remove {sum(counts.values())} message(s) from queue {args.queue!r} ({lists}){also}; "
            "running jobs are not touched. Add --confirm to do it."
        )
    cancelled = asyncio.run(_clear(settings, args.queue, with_schedule))
    where = "its lists and the schedule" if with_schedule else "its lists"
    print(f"cleared queue {args.queue!r} ({where}): cancelled {cancelled} job(s); running jobs were not touched")
    return 0


async def _count(settings: Settings, queue: str, with_schedule: bool) -> tuple[dict[str, int], int]:
    """Messages in each of the queue's lists (high, normal, low) and, optionally, the schedule's size."""
    from pocketqueue.runtime import open_runtime

    async with open_runtime(settings) as runtime, runtime.redis.pipeline(transaction=False) as pipe:
        for name in queue_lists(queue):
            pipe.llen(name)
        pipe.zcard(Keys(settings.queue_key_prefix).schedule)
        *lengths, scheduled = await pipe.execute()
    counts = dict(zip(("high", "normal", "low"), map(int, lengths), strict=True))
    return counts, int(scheduled) if with_schedule else 0


async def _clear(settings: Settings, queue: str, with_schedule: bool) -> int:
    from pocketqueue.runtime import open_runtime

    async with open_runtime(settings) as runtime:
        cancelled = await runtime.store.clear(queue, clear_schedule=with_schedule)
        await _audited(runtime, "clear_queue", [], target=queue, job_count=cancelled)
        return cancelled


async def _audited(runtime: QueueRuntime, action: str, job_ids: list[str], **details: Any) -> None:
    max_entries = runtime.settings.queue_audit_max_entries
    who = audit.cli_user()
    await audit.record(
        runtime.redis, runtime.store.keys, max_entries, who=who, action=action, job_ids=job_ids, **details
    )
