"""A plain Celery task (not a PocketQueue job): a worker loading it must refuse to start."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="plain.add")
def add(a: int, b: int) -> int:
    return a + b
