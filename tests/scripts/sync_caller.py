"""A plain synchronous script (no event loop) that reaches the queue from Python.

Run by tests/test_client.py in a subprocess with the test settings in its environment;
prints what it saw as one JSON object.
"""

from __future__ import annotations

import json
import os
from typing import Any

from pocketqueue import Client, JobFailed, JobTimeout, QueueError

out: dict[str, Any] = {}

# First as a caller without the task code: nothing is imported but the client.
client = Client()
out["client_result"] = client.dispatch("tests.add", kwargs={"a": 20, "b": 22}).result(timeout=30)["sum"]
first = client.dispatch("tests.add", kwargs={"a": 1, "b": 1}, idempotency_key="sync-caller-once")
again = client.dispatch("tests.add", kwargs={"a": 1, "b": 1}, idempotency_key="sync-caller-once")
out["idempotent"] = [again.job_id == first.job_id, first.duplicate, again.duplicate]
try:
    client.dispatch("tests.add", kwargs={"a": 1, "b": 2}, idempotency_key="sync-caller-once")
except QueueError as exc:
    out["reused_key"] = type(exc).__name__

# Then with the task code, as the app that defines the tasks would.
from pq_client_tasks import limited, spawn  # noqa: E402
from pq_test_tasks import add, fail, runs  # noqa: E402

out["delay"] = add.delay(2, 3).result(timeout=30)["sum"]
handle = add.with_options(priority="high", tags={"case": "sync"}).dispatch(1, kwargs={"b": 5})
job = handle.wait(timeout=30)
out["dispatch"] = [job.status.value, job.result["sum"], job.tags, job.priority.value]
later = add.apply_async(args=[1], kwargs={"b": 1}, countdown=600, priority=0)
out["apply_async"] = [later.status().status.value, later.status().priority.value, later.cancel().status.value]
try:
    fail.delay("bad input").result(timeout=30)
except JobFailed as exc:
    out["failed"] = [exc.error_type, exc.message, "ValueError" in (exc.remote_traceback or "")]
slow = runs.delay("sync-caller-slow", sleep=10)
try:
    slow.result(timeout=0.3)
except JobTimeout as exc:
    out["timeout"] = exc.status in ("queued", "processing")
slow.cancel()
nested = spawn.delay(4, 5).result(timeout=30)
out["nested"] = [nested["result"]["sum"], nested["child"] != ""]
try:
    limited.delay(4).result(timeout=30)
except JobFailed as exc:
    out["limited"] = [exc.error_type, "1 s" in exc.message]
refused = []
for attempt in (
    lambda: add.delay(1),  # a missing argument
    lambda: add.with_options(bogus=1),  # type: ignore[call-arg]
    lambda: add.dispatch(1, 2, priority="urgent"),
    lambda: add.dispatch(1, 2, queue="a:b"),
):
    try:
        attempt()
    except QueueError as exc:
        refused.append(type(exc).__name__)
out["refused"] = refused
# A client made before a fork (gunicorn --preload, a prefork pool) works in the child.
pid = os.fork()
if pid == 0:
    code = 0 if client.dispatch("tests.add", kwargs={"a": 3, "b": 4}).result(timeout=30)["sum"] == 7 else 1
    os._exit(code)
out["forked_child"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
out["parent_after_fork"] = client.dispatch("tests.add", kwargs={"a": 5, "b": 5}).result(timeout=30)["sum"]
print(json.dumps(out))
