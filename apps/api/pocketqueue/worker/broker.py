"""kombu's Redis transport, with one client for its plain commands instead of one per command.

kombu's Redis channel builds a new redis-py client for every acknowledgement, every
delivery's bookkeeping and every publish (`Channel.conn_or_acquire`), and building one in
redis-py 8 fills a table of about 170 reply callbacks: two per job, about a tenth of the
worker main process's time, which is what limits a worker's drain rate. The client holds
no connection of its own (each command borrows one from the channel's pool), so one per
channel serves them all, from any thread. The clients that do hold a connection (the
blocking BRPOP one, the fanout subscriber) are left as kombu makes them.

Named by `broker_transport` in the Celery app (app.py) for a `redis://` broker, so
workers, Flower and the `celery` CLI all use it. Other URLs (`rediss://`, whose TLS kombu
turns on by the URL's scheme, a socket) keep kombu's own transport.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis

__all__ = ["Channel", "Transport", "broker_transport"]


def broker_transport(broker_url: str) -> str | None:
    """What the app's `broker_transport` names for `broker_url` (None: kombu's, by the URL)."""
    return "pocketqueue.worker.broker:Transport" if broker_url.startswith("redis://") else None


class Channel(kombu_redis.Channel):
    """kombu's channel; `_create_client` hands out one client for plain commands."""

    _shared_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        if self._shared_client is None:
            self._shared_client = super()._create_client()  # type: ignore[no-untyped-call]
        return self._shared_client


class Transport(kombu_redis.Transport):
    """kombu's Redis transport, with the channel above."""

    Channel = Channel
