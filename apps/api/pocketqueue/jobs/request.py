"""DispatchRequest: what a caller asks to run, and when, how urgently, how many times."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pocketqueue.errors import InvalidRequest
from pocketqueue.jobs.models import Priority
from pocketqueue.jobs.payload import check_json

MAX_DELAY_SECONDS = 366 * 86_400
MAX_KEY_LENGTH = 200  # task names, idempotency and unique keys
MAX_TAGS = 16
TAG_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_TAG_VALUE = 128


@dataclass(frozen=True)
class DispatchRequest:
    """A registered task name, its arguments, and how to run it.

    priority          high | normal | low: which jobs a worker takes first
    max_retries       overrides the task's (and QUEUE_MAX_RETRIES)
    delay_seconds/eta run no earlier than this (status `scheduled` until then)
    idempotency_key   the same key and request within QUEUE_IDEMPOTENCY_TTL_SECONDS give back the first job
    unique_key        at most one active job per key
    tags              up to 16 name: value strings, to find the job by (GET /jobs?tag=name:value)
    queue             the queue to run it on (default: the task's, else QUEUE_NAME)
    dispatched_by     the API key that sent it (set by the API, not by the caller)
    """

    task: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    priority: Priority = Priority.NORMAL
    max_retries: int | None = None
    delay_seconds: float | None = None
    eta: datetime | None = None
    idempotency_key: str | None = None
    unique_key: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    queue: str | None = None
    dispatched_by: str | None = None  # the API key's name (never its secret) that asked for it

    def check(self, max_json_depth: int, now: datetime) -> None:
        """Raise InvalidRequest unless a worker can carry and run this request.

        Every entry point's dispatch passes through here before anything is written, so
        what HTTP's schema checks is checked again for callers that skip the schema.
        """
        for name, text in (
            ("task", self.task),
            ("idempotency_key", self.idempotency_key),
            ("unique_key", self.unique_key),
        ):
            if text is not None and not 0 < len(text) <= MAX_KEY_LENGTH:
                raise InvalidRequest(f"{name} must be 1 to {MAX_KEY_LENGTH} characters long")
            check_json(text, name, 1)
        if not isinstance(self.args, list | tuple) or not isinstance(self.kwargs, dict):
            raise InvalidRequest("args must be a list and kwargs an object")
        check_json(self.args, "args", max_json_depth)
        check_json(self.kwargs, "kwargs", max_json_depth)
        self._check_timing(now)
        check_tags(self.tags)
        if self.queue is not None:
            check_queue_name(self.queue, "queue")
        if self.max_retries is not None and not 0 <= self.max_retries <= 100:
            raise InvalidRequest("max_retries must be from 0 to 100")

    def _check_timing(self, now: datetime) -> None:
        if self.eta is not None and self.delay_seconds is not None:
            raise InvalidRequest("give delay_seconds or eta, not both")
        if self.delay_seconds is not None and not 0 <= self.delay_seconds <= MAX_DELAY_SECONDS:
            raise InvalidRequest(f"delay_seconds must be from 0 to {MAX_DELAY_SECONDS} (366 days)")
        if self.eta is None:
            return
        if self.eta.tzinfo is None:
            raise InvalidRequest("eta must be timezone-aware (an ISO 8601 time with an offset, e.g. Z or +02:00)")
        if self.eta - now > timedelta(seconds=MAX_DELAY_SECONDS):
            raise InvalidRequest(f"eta must be at most {MAX_DELAY_SECONDS} s (366 days) from now, like delay_seconds")

    def run_at(self, now: datetime) -> datetime | None:
        """When the job is due, if later than `now`; None to queue it at once."""
        due = self.eta if self.eta is not None else None
        if self.delay_seconds is not None and self.delay_seconds > 0:
            due = now + timedelta(seconds=self.delay_seconds)
        return due if due is not None and due > now else None

    def fingerprint(self) -> str:
        """A digest of everything but the idempotency key: the same request gives the same digest."""
        fields = asdict(self)
        del fields["idempotency_key"]
        del fields["dispatched_by"]  # the same request from another key is still the same request
        # The same request, spelled differently: one instant in any UTC offset, no delay as 0.
        fields["eta"] = self.eta.timestamp() if self.eta is not None else None
        fields["delay_seconds"] = self.delay_seconds or None
        if self.queue is None:  # as before queues existed: a key made then still matches its repeat
            del fields["queue"]
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()


# What a dispatch or a task may name. Narrower than QUEUE_NAME's rule (no ':', ',' or
# whitespace, config.py), which must keep accepting names chosen before queues existed:
# kombu names a queue's priority lists `<name>:<step>`, `--queues` splits on ',', and one
# plain character set means the API's schema and this check agree on every name.
QUEUE_PATTERN = r"^[A-Za-z0-9_.@+=/-]{1,100}$"
QUEUE_NAME = re.compile(QUEUE_PATTERN)


def check_queue_name(name: Any, setting: str) -> None:
    """Raise InvalidRequest unless `name` can name a queue."""
    if not isinstance(name, str) or not QUEUE_NAME.fullmatch(name):
        raise InvalidRequest(f"{setting} must be 1 to 100 letters, digits or '_.@+=/-'")


def check_tags(tags: Any) -> None:
    """Raise InvalidRequest unless `tags` is at most 16 short name: value strings.

    Names are letters, digits, `_`, `.` and `-` (they name Redis keys and query strings);
    values are up to 128 printable characters.
    """
    if not isinstance(tags, dict):
        raise InvalidRequest("tags must be an object of name: value strings")
    if len(tags) > MAX_TAGS:
        raise InvalidRequest(f"at most {MAX_TAGS} tags (got {len(tags)})")
    for name, value in tags.items():
        if not isinstance(name, str) or not TAG_NAME.match(name):
            raise InvalidRequest(f"tag name {str(name)[:80]!r} must be 1 to 64 letters, digits, '_', '.' or '-'")
        if not isinstance(value, str) or not 0 < len(value) <= MAX_TAG_VALUE or not value.isprintable():
            raise InvalidRequest(f"tag {name!r}: the value must be 1 to {MAX_TAG_VALUE} printable characters")
        check_json(value, f"tags[{name!r}]", 1)
