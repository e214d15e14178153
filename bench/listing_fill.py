"""Job records for bench/listing.py, written by the real create (and cancel) scripts.

Each record is what the dispatch flow writes (a `Job`, `to_hash`, the ARGV JobStore.create
sends), only many at a time through pipelines, with creation times spread 50 ms apart
into the past, so the indexes hold a long history, as a busy deployment's would. The mix:

- tasks: book.render 40%, book.ocr 30%, mail.send 20%, report.export 10%;
- tags: every job `tenant:<acme|globex|initech>` (book.ocr never globex, so a query for
  both matches nothing and walks until the scan budget), book jobs also `book_id:<n>`
  (5 jobs per book: many distinct, rare values);
- status: 12% scheduled 30 days ahead, the rest queued; 8% cancelled right after they
  are created (the cancel script), so the status indexes differ in size;
- priorities high / normal / low; 1% with an idempotency key (`order-<i>`).

Messages are empty strings pushed to a queue nobody consumes: the listing never reads
them, and a real Celery message (~1 KB) would only add memory.
"""

from __future__ import annotations

import multiprocessing
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis

from pocketqueue.jobs import scripts
from pocketqueue.jobs.dispatch import record_arg
from pocketqueue.jobs.keys import Keys, queue_list
from pocketqueue.jobs.models import Job, JobStatus, Priority

SPACING_SECONDS = 0.05  # between two jobs' creation times
RECORD_TTL_SECONDS = 30 * 86400  # nothing expires (or is reaped) during the run
SCHEDULED_AHEAD = timedelta(days=30)
PIPELINE = 2_000
CHUNK = 20_000  # records one fill process writes at a time
UNCONSUMED_QUEUE = "listing-nobody"
TASKS = (("book.render", 0.4), ("book.ocr", 0.7), ("mail.send", 0.9), ("report.export", 1.0))
PRIORITIES = (Priority.HIGH, Priority.NORMAL, Priority.NORMAL, Priority.NORMAL, Priority.LOW)


@dataclass(frozen=True)
class Planned:
    """One record to create, and whether to cancel it right after."""

    job: Job
    cancel: bool
    idempotency_key: str | None


def plan(i: int, base: float, rng: random.Random) -> Planned:
    """Record number `i` of the mix (its creation time is `base + i * SPACING_SECONDS`)."""
    task = next(name for name, bound in TASKS if rng.random() < bound)
    draw = rng.random()
    if task == "book.ocr":
        tenant = "acme" if draw < 2 / 3 else "initech"
    else:
        tenant = "acme" if draw < 0.55 else "globex" if draw < 0.9 else "initech"
    tags = {"tenant": tenant}
    kwargs: dict[str, object] = {"to": f"user{i % 9973}@example.com"}
    if task.startswith("book."):
        tags["book_id"] = str(i // 5)
        kwargs = {"book_id": i // 5, "page": i % 300}
    created = datetime.fromtimestamp(base + i * SPACING_SECONDS + rng.random() * SPACING_SECONDS / 2, UTC)
    scheduled = rng.random() < 0.12
    idempotency_key = f"order-{i}" if i % 100 == 37 else None
    job = Job(
        job_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        task=task,
        kwargs=kwargs,
        status=JobStatus.SCHEDULED if scheduled else JobStatus.QUEUED,
        priority=PRIORITIES[i % len(PRIORITIES)],
        created_at=created,
        run_at=created + SCHEDULED_AHEAD if scheduled else None,
        idempotency_key=idempotency_key,
        tags=tags,
        queue=UNCONSUMED_QUEUE,
    )
    return Planned(job, rng.random() < 0.08, idempotency_key)


def create_args(keys: Keys, planned: Planned) -> list[str | int]:
    """The ARGV of create.lua, as JobStore.create builds it."""
    job = planned.job
    run_at = f"{job.run_at.timestamp():.6f}" if job.run_at is not None else ""
    message, target = ("", "") if job.run_at else ("", queue_list(UNCONSUMED_QUEUE, job.priority.broker_priority))
    idem_key = planned.idempotency_key or ""
    return [
        keys.prefix,
        job.job_id,
        f"{job.created_at.timestamp():.6f}",
        message,
        target,
        run_at,
        idem_key,
        f"fingerprint-{idem_key}" if idem_key else "",
        RECORD_TTL_SECONDS if idem_key else 0,
        job.unique_key or "",
        record_arg(job, RECORD_TTL_SECONDS),
    ]


def fill_chunk(url: str, prefix: str, base: float, start: int, stop: int) -> int:
    """Create records `start..stop` (pipelines of PIPELINE); returns how many were cancelled."""
    keys = Keys(prefix)
    rng = random.Random(start)  # a chunk is the same records whichever process writes it
    cancelled = 0
    with redis.Redis.from_url(url, decode_responses=True, socket_timeout=300) as client:
        create, cancel = client.register_script(scripts.CREATE), client.register_script(scripts.CANCEL)
        for first in range(start, stop, PIPELINE):
            batch = range(first, min(stop, first + PIPELINE))
            with client.pipeline(transaction=False) as pipe:
                for i in batch:
                    planned = plan(i, base, rng)
                    create(args=create_args(keys, planned), client=pipe)
                    if planned.cancel:
                        token = f"{rng.getrandbits(128):032x}"
                        stamp = f"{planned.job.created_at.timestamp() + 1:.6f}"
                        cancel(args=[prefix, planned.job.job_id, stamp, token], client=pipe)
                        cancelled += 1
                replies = pipe.execute()
            created = sum(1 for reply in replies if isinstance(reply, list) and reply[0] == "created")
            if created != len(batch):
                raise RuntimeError(f"create.lua created {created} of {len(batch)} records")
    return cancelled


def _fill_chunk(call: tuple[str, str, float, int, int]) -> int:
    return fill_chunk(*call)


class Filler:
    """Writes records of the mix up to a number; a later call carries on where the last stopped.

    Two processes write chunks side by side: one alone spends as long encoding commands and
    parsing replies as Redis spends running the scripts.
    """

    def __init__(self, url: str, keys: Keys, total: int, processes: int = 2) -> None:
        self.url = url
        self.keys = keys
        self.base = time.time() - total * SPACING_SECONDS  # the newest record is about now
        self.processes = processes
        self.written = 0
        self.cancelled = 0

    def fill_to(self, stop: int, report: Callable[[int, float], None]) -> float:
        """Create records until `stop` exist; returns the seconds it took."""
        started = time.perf_counter()
        chunks = [(n, min(stop, n + CHUNK)) for n in range(self.written, stop, CHUNK)]
        with multiprocessing.get_context("fork").Pool(self.processes) as pool:
            calls = [(self.url, self.keys.prefix, self.base, first, last) for first, last in chunks]
            for cancelled, (_, last) in zip(pool.imap(_fill_chunk, calls), chunks, strict=True):
                self.cancelled += cancelled
                self.written = last
                if last % 100_000 == 0 or last == stop:
                    report(last, time.perf_counter() - started)
        return time.perf_counter() - started
