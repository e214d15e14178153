"""WorkerJobStore: the worker side of the job records (sync, as Celery tasks are)."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import NoScriptError
from redis.exceptions import ResponseError as RedisResponseError

from pocketqueue.jobs import scripts
from pocketqueue.jobs.dispatch import Created, Planned, create_args
from pocketqueue.jobs.keys import Keys
from pocketqueue.jobs.models import (
    ATTEMPT_ERROR_PREFIX,
    CeleryCaller,
    Job,
    JobError,
    JobStatus,
    decode_record,
    now_timestamp,
)
from pocketqueue.jobs.payload import PayloadError, check_json
from pocketqueue.jobs.registry import PermanentError

log = logging.getLogger(__name__)

ANY_ATTEMPT = "*"


@dataclass(frozen=True)
class Claim:
    """What a worker learned when it tried to start a job."""

    outcome: str  # 'started', 'running', 'orphaned', 'missing', or the job's status
    token: str = ""  # presented by every later write of this attempt
    attempt: int = 0
    max_retries: int = 0
    # A job adopted from a plain Celery message: what its caller asked (see worker/adopt.py).
    caller: CeleryCaller | None = None

    @property
    def started(self) -> bool:
        return self.outcome == "started"


@dataclass
class FlowState:
    """A flow job's checkpoint: the node to run next (None: the flow ended), the shared store
    as JSON, and its stages as the record shows them (a list of Stage dicts)."""

    position: str | None
    store_json: str | None
    stages: list[dict[str, Any]]


class WorkerJobStore:
    """Claims jobs, reports progress and heartbeats, records outcomes, runs the schedule."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._start = redis.register_script(scripts.START)
        self._create = redis.register_script(scripts.CREATE)
        self._heartbeat = redis.register_script(scripts.HEARTBEAT)
        self._finish = redis.register_script(scripts.FINISH)
        self._retry = redis.register_script(scripts.RETRY)
        self._promote = redis.register_script(scripts.PROMOTE)
        self._recover = redis.register_script(scripts.RECOVER)
        self._hand_back = redis.register_script(scripts.HAND_BACK)
        self._cancel = redis.register_script(scripts.CANCEL)
        self._count_delivery = redis.register_script(scripts.COUNT_DELIVERY)
        self._republish = redis.register_script(scripts.REPUBLISH)
        self._lead = redis.register_script(scripts.LEAD)
        self._defer = redis.register_script(scripts.DEFER)
        self._reap = redis.register_script(scripts.REAP)
        self._announce = redis.register_script(scripts.ANNOUNCE)
        self._checkpoint = redis.register_script(scripts.CHECKPOINT)

    def claim(self, job_id: str, worker: str, lease_ms: int, token: str, started_at: str | None = None) -> Claim:
        """Claim a queued job under `token` (make one per message; retrying with it is safe)."""
        began = started_at or now_timestamp()
        reply = self._start(args=[self.keys.prefix, job_id, began, worker, lease_ms, token])
        return Claim(reply[0], token, int(reply[1]), int(reply[2])) if len(reply) > 1 else Claim(reply[0])

    def claim_noting_caller(
        self, job_id: str, worker: str, lease_ms: int, token: str, started_at: str | None = None
    ) -> Claim:
        """claim(), and the record's Celery caller (a job adopted from a plain Celery message).

        In the same round trip as the claim, so the jobs PocketQueue dispatched (no caller)
        pay nothing for the jobs it adopted: every attempt of those, however its message
        was published, learns from the record what their caller asked.
        """
        args: list[str | int] = [self.keys.prefix, job_id, started_at or now_timestamp(), worker, lease_ms, token]
        with self.redis.pipeline(transaction=False) as pipe:
            # EVALSHA, not the Script object: in a pipeline, redis-py would first ask
            # SCRIPT EXISTS, a round trip of its own on every claim.
            pipe.evalsha(self._start.sha, 0, *args)
            pipe.hget(self.keys.job(job_id), "celery")
            replies = pipe.execute(raise_on_error=False)
        reply, caller_json = replies
        if isinstance(reply, NoScriptError):  # a restarted or flushed Redis: load it (replaying the claim is safe)
            reply, caller_json = self._start(args=args), self.redis.hget(self.keys.job(job_id), "celery")
        elif isinstance(reply, RedisResponseError):
            raise reply
        claim = Claim(reply[0], token, int(reply[1]), int(reply[2])) if len(reply) > 1 else Claim(reply[0])
        if caller_json is None:
            return claim
        return Claim(claim.outcome, claim.token, claim.attempt, claim.max_retries, _caller(job_id, caller_json))

    def create(self, planned: Planned, ttl_seconds: int) -> Created:
        """Write a planned job with create.lua (as every dispatch does): 'created', or why not."""
        outcome, job_id = self._create(args=create_args(self.keys.prefix, planned, ttl_seconds))
        return Created(str(outcome), str(job_id))

    def heartbeat(
        self,
        job_id: str,
        token: str,
        worker: str,
        lease_ms: int,
        progress: int | None = None,
        step: str | None = None,
    ) -> str:
        """Renew the lease (and record progress); returns the status, or 'superseded'."""
        status: str = self._heartbeat(
            args=[self.keys.prefix, job_id, token, lease_ms, "" if progress is None else progress, step or "", worker]
        )
        return status

    def checkpoint(self, job_id: str, token: str, worker: str, lease_ms: int, state: FlowState, progress: int) -> str:
        """Save a flow job's state (checkpoint.lua); returns the job's status, or 'superseded'.

        `state.store_json` None leaves the saved store as it is (a stage only started).
        """
        step = next((stage["name"] for stage in state.stages if stage["status"] == "running"), "")
        status: str = self._checkpoint(
            args=[
                self.keys.prefix,
                job_id,
                token,
                worker,
                lease_ms,
                progress,
                step,
                json.dumps(state.stages, separators=(",", ":")),
                state.position or "",
                "" if state.store_json is None else state.store_json,
                now_timestamp(),
            ]
        )
        return status

    def flow_state(self, job_id: str) -> FlowState | None:
        """A flow job's last checkpoint, or None if it has none (its first attempt)."""
        fields = self.redis.hmget(self.keys.job(job_id), "flow_position", "flow_store", "stages")
        position, store_json, stages = (str(field) if field is not None else None for field in fields)
        if position is None or stages is None:
            return None
        return FlowState(position or None, store_json, json.loads(stages))

    def complete(self, job_id: str, token: str, result_json: str) -> str:
        fields = ("result", result_json, "progress", "100")
        return self._record(job_id, token, "", JobStatus.COMPLETED, None, None, *fields)

    def partial(self, job_id: str, token: str, result_json: str, errors_json: str) -> str:
        fields = ("result", result_json, "partial_errors", errors_json, "progress", "100")
        return self._record(job_id, token, "", JobStatus.PARTIAL, None, None, *fields)

    def fail(self, job_id: str, error: JobError, dead_letter_ttl: int, token: str) -> str:
        """Fail the attempt holding `token` for good (into the dead-letter set for `dead_letter_ttl` s)."""
        fields = ("error", error.model_dump_json())
        return self._record(job_id, token, "", JobStatus.FAILED, dead_letter_ttl, None, *fields)

    def fail_queued(self, job_id: str, error: JobError, dead_letter_ttl: int) -> str:
        """Fail a job while it is queued (a worker that cannot run it); never a running one."""
        fields = ("error", error.model_dump_json())
        return self._record(job_id, ANY_ATTEMPT, "", JobStatus.FAILED, dead_letter_ttl, None, *fields)

    def fail_timed_out(self, job_id: str, error: JobError, dead_letter_ttl: int, worker: str, before: float) -> str:
        """Fail the attempt `worker` runs, if it started before `before` (epoch s): a hard time limit."""
        fields = ("error", error.model_dump_json())
        return self._record(job_id, ANY_ATTEMPT, worker, JobStatus.FAILED, dead_letter_ttl, before, *fields)

    def count_delivery(
        self, job_id: str, token: str, max_deliveries: int, error: JobError, dead_letter_ttl: int
    ) -> tuple[str, int]:
        """Count a redelivery of a queued job's message; past `max_deliveries`, fail the job (a poison message).

        `token` is new for each delivery (a call resent after a lost reply counts once).
        Returns ('ok', deliveries), ('quarantined', deliveries), or (the status found, 0).
        """
        now, error_json = now_timestamp(), error.model_dump_json()
        outcome, deliveries = self._count_delivery(
            args=[self.keys.prefix, job_id, token, now, max_deliveries, error_json, dead_letter_ttl]
        )
        return str(outcome), int(deliveries)

    def retry(self, job_id: str, token: str, error: JobError, backoff_seconds: float) -> str:
        """Park the job as 'retrying' for `backoff_seconds` (by Redis's clock); 'ok' or the status it found."""
        outcome: str = self._retry(
            args=[
                self.keys.prefix,
                job_id,
                token,
                now_timestamp(),
                f"{backoff_seconds:.6f}",
                f"{ATTEMPT_ERROR_PREFIX}{error.attempt}",
                error.model_dump_json(),
            ]
        )
        return outcome

    def _record(
        self,
        job_id: str,
        token: str,
        worker: str,
        status: JobStatus,
        ttl: int | None,
        before: float | None,
        *fields: str,
    ) -> str:
        started_before = "" if before is None else f"{before:.6f}"
        now = now_timestamp()
        outcome: str = self._finish(
            args=[self.keys.prefix, job_id, token, worker, status.value, now, ttl or "", started_before, *fields]
        )
        return outcome

    # The janitor's side: publish what is due, recover what was orphaned.

    def due(self, now: float, limit: int = 100) -> list[str]:
        """Ids of scheduled and retrying jobs due by `now`, earliest first."""
        return [str(job_id) for job_id in self.redis.zrangebyscore(self.keys.schedule, "-inf", now, start=0, num=limit)]

    def promote(self, job_id: str, message: str, queue_list: str) -> str:
        outcome: str = self._promote(args=[self.keys.prefix, job_id, now_timestamp(), message, queue_list])
        return outcome

    def lead(self, worker: str, lease_ms: int) -> bool:
        """Take or renew the janitor's leadership for `worker`; True while it leads."""
        return bool(self._lead(args=[self.keys.prefix, worker, lease_ms]))

    def resign(self, worker: str) -> None:
        """Give up the leadership (if `worker` holds it), so another janitor takes over at once."""
        self._lead(args=[self.keys.prefix, worker, 0])

    def server_time(self) -> float:
        """Seconds since the epoch by the Redis server's clock (what the scripts compare against)."""
        seconds, micros = self.redis.time()
        return float(seconds) + micros / 1e6

    def lapsed(self, limit: int = 200) -> list[tuple[str, str]]:
        """(job id, claim token) of running jobs whose lease deadline has passed, earliest first."""
        now_ms = int(self.server_time() * 1000)
        job_ids = [str(job_id) for job_id in self.redis.zrangebyscore(self.keys.leases, "-inf", now_ms, 0, limit)]
        return self._without_lease(job_ids)

    def orphaned(self) -> list[tuple[str, str]]:
        """(job id, claim token) of every processing job whose lease has lapsed: a full scan.

        The leases set finds lapsed leases in O(lapsed); this scan catches running jobs
        that have no entry there (claimed by a version before it existed). The janitor
        runs it once, when it becomes the leader.
        """
        job_ids = [str(job_id) for job_id in self.redis.zrange(self.keys.index(JobStatus.PROCESSING), 0, -1)]
        return self._without_lease(job_ids)

    def _without_lease(self, job_ids: list[str]) -> list[tuple[str, str]]:
        if not job_ids:
            return []
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.exists(self.keys.lease(job_id))
                pipe.hget(self.keys.job(job_id), "claim")
            replies = pipe.execute()
        leases, tokens = replies[::2], replies[1::2]
        found = zip(job_ids, leases, tokens, strict=True)
        return [(job_id, str(token or "")) for job_id, lease, token in found if not lease]

    def lost_messages(self, queue_list: str, grace_seconds: float, limit: int = 200) -> list[str]:
        """Queued jobs of `queue_list` whose message may be gone (republish.lua decides for each).

        Those published over `grace_seconds` ago and before the list's watermark, or all of
        those if the list is empty. Costs two round trips and O(suspects), whatever the
        queue's length.
        """
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.hget(self.keys.watermark, queue_list)
            pipe.llen(queue_list)
            (seconds, micros), mark, length = pipe.execute()
        upper = float(seconds) + micros / 1e6 - grace_seconds
        if length:
            if mark is None:
                return []
            upper = min(upper, float(mark))
        found = self.redis.zrangebyscore(self.keys.published(queue_list), "-inf", f"({upper}", 0, limit)
        return [str(job_id) for job_id in found]

    def republish(self, job_id: str, queue_list: str, grace_seconds: float, message: str) -> str:
        """Publish a queued job's lost message again: 'republished', or why not."""
        args: list[str | float] = [self.keys.prefix, job_id, queue_list, grace_seconds, message, self.keys.unacked]
        outcome: str = self._republish(args=args)
        return outcome

    def recover(
        self, job_id: str, token: str, error: JobError, message: str, queue_list: str, dead_letter_ttl: int
    ) -> str:
        """Requeue an orphaned attempt (or fail it, if no retries are left): 'requeued', 'failed' or why not."""
        args = [self.keys.prefix, job_id, token, now_timestamp(), error.model_dump_json(), message, queue_list]
        outcome: str = self._recover(args=[*args, dead_letter_ttl])
        return outcome

    def cancel(self, job_id: str) -> str:
        """Cancel an active job (a revoke seen by a worker); returns the status it had, or 'missing'."""
        before, _ = self._cancel(args=[self.keys.prefix, job_id, now_timestamp(), uuid.uuid4().hex])
        return str(before)

    def hand_back(self, job_id: str, token: str, message: str, queue_list: str) -> str:
        """Requeue the attempt holding `token`, cut by its worker's shutdown, uncounted; 'ok' or why not."""
        outcome: str = self._hand_back(args=[self.keys.prefix, job_id, token, now_timestamp(), message, queue_list])
        return outcome

    def get(self, job_id: str) -> Job | None:
        return decode_record(job_id, self.redis.hgetall(self.keys.job(job_id)))

    def announce_worker(self, name: str, info: dict[str, Any], ttl_seconds: int) -> float:
        """Refresh this worker's heartbeat key and registry entry (see announce.lua); returns Redis's time.

        Both lapse `ttl_seconds` after the worker stops refreshing them (killed, or cut off).
        """
        now: str = self._announce(args=[self.keys.prefix, name, json.dumps(info), ttl_seconds])
        return float(now)

    def workers_with_task(self, task: str) -> list[str]:
        """Names of the live workers whose heartbeat lists `task` (a SCAN of the keyspace: call it rarely)."""
        names = [str(key) for key in self.redis.scan_iter(self.keys.worker("*"), count=1000)]
        if not names:
            return []
        found = []
        for name, info in zip(names, self.redis.mget(names), strict=True):
            if info is not None and task in json.loads(info).get("tasks", []):
                found.append(name.removeprefix(self.keys.worker("")))
        return found

    def defer_unknown(
        self, job_id: str, task: str, delay: float, wait_bound: float, error: JobError, dead_letter_ttl: int
    ) -> str:
        """Hand back a queued job this worker cannot run (see defer.lua): 'deferred', 'failed' or its status.

        Only once the job has waited `wait_bound` s does it look for a live worker with
        the task (a scan of the workers' keys), to decide between handing back and failing.
        """
        now = float(now_timestamp())
        args: list[str | float | int] = [self.keys.prefix, job_id, f"{now:.6f}", f"{now + delay:.6f}", wait_bound]
        args += [error.model_dump_json(), dead_letter_ttl]
        outcome: str = self._defer(args=[*args, "?"])
        if outcome == "ask":
            outcome = self._defer(args=[*args, "0" if self.workers_with_task(task) else "1"])
        return outcome

    def reap(self, lead_seconds: float, most: int = 500) -> int:
        """Take finished jobs whose records expire within `lead_seconds` out of the listing (reap.lua).

        Returns how many due entries it handled: fewer than `most` when none is left due.
        """
        reaped: int = self._reap(args=[self.keys.prefix, "", lead_seconds, most])
        return reaped

    def drop_retired_keys(self) -> None:
        """Delete the keys an earlier version kept and this one neither writes nor reads.

        The status listing had its own sorted sets (`list:status:<status>`) until the status
        indexes were scored by creation time and served it: left alone, they would never
        be reaped or expire. (`failed` keeps its own: the dead-letter set is by failure time.)
        """
        retired = [status for status in JobStatus if status is not JobStatus.FAILED]
        self.redis.delete(*(self.keys.listed("status", status.value) for status in retired))

    def retire_worker(self, name: str) -> None:
        """Leave the registry at once (a clean stop), rather than a heartbeat's TTL later."""
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.worker(name))
            pipe.zrem(self.keys.workers, name)
            pipe.execute()


def _caller(job_id: str, text: str) -> CeleryCaller | None:
    try:
        return CeleryCaller.model_validate_json(text)
    except ValueError as exc:  # pydantic's ValidationError: written by hand, or by a newer version
        log.warning("job %s: its Celery caller cannot be read (%s); run without it", job_id, exc)
        return None


class ResultNotJSON(PermanentError, TypeError):
    """A task returned something JSON cannot hold; another attempt would return it again."""


class ResultTooLarge(PermanentError, ValueError):
    """A task returned more than QUEUE_MAX_RESULT_BYTES; another attempt would too."""


def to_json(value: Any, max_depth: int = 32, max_bytes: int | None = None) -> str:
    """Serialise a task's return value, or raise ResultNotJSON / ResultTooLarge naming what is wrong.

    The same rules as a dispatch's arguments (jobs/payload.py): every reader of the
    record, the API's response encoder included, must be able to carry it.
    """
    try:
        check_json(value, "result", max_depth)
    except PayloadError as exc:
        raise ResultNotJSON(f"the task's return value is not JSON-serialisable: {exc.detail}") from None
    text = json.dumps(value)
    if max_bytes is not None and len(text) > max_bytes:  # ASCII (json escapes the rest): chars are bytes
        raise ResultTooLarge(
            f"the task's return value is {len(text)} bytes as JSON, over QUEUE_MAX_RESULT_BYTES ({max_bytes}); "
            "store large outputs elsewhere (a file, object storage) and return where they are"
        )
    return text
