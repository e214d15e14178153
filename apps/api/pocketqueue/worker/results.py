"""RecordBackend: Celery's result backend, answered from the job records.

A job's record already holds its status, result and errors, so Celery's own result
tools (`celery -A pocketqueue.worker result <id>`, `AsyncResult(id).get()`, Flower's
result page) read it instead of a `celery-task-meta-<id>` copy: nothing more is written
per job (no second copy of every result in Redis, no extra command in the finishing
script), and every way a job ends reads truthfully, a cancel, a crash recovery or a
quarantine included. It is read-only: workers never store results through it (tasks run
with `ignore_result`), and a waiting `get()` polls the record (every half second by default).

A plain Celery client, with its own Redis result backend, reads `celery-task-meta-<id>`
instead: jobs adopted from its messages also write there (observe/celery_results.py).
"""

from __future__ import annotations

from typing import Any

from celery import states
from celery.backends.base import BaseBackend

from pocketqueue.observe.celery_results import celery_meta

__all__ = ["BACKEND", "RecordBackend", "celery_meta"]

# What `result_backend` names (Celery imports it by this path).
BACKEND = "pocketqueue.worker.results:RecordBackend"


class RecordBackend(BaseBackend):  # type: ignore[misc]  # celery ships no type hints
    """A read-only Celery result backend over PocketQueue's job records."""

    def _get_task_meta_for(self, task_id: str) -> dict[str, Any]:
        job = self.app.job_store.get(task_id)
        if job is None:
            return {"status": states.PENDING, "result": None, "task_id": task_id}
        return celery_meta(job)

    def _store_result(self, task_id: str, result: Any, state: str, *args: Any, **kwargs: Any) -> Any:
        # The record is the store, written by the transition scripts. Celery asks for a
        # write here only for a message that did not ignore its result (a plain Celery
        # caller's): that caller reads Celery's own backend, written from the record
        # (observe/celery_results.py); a copy here would only be a stale one.
        return result

    def _forget(self, task_id: str) -> None:
        """Nothing to forget: the record expires on its own."""

    def cleanup(self) -> None:
        """Nothing to clean: records expire on their own."""

    def as_uri(self, *args: Any, **kwargs: Any) -> str:
        return "pocketqueue://records"
