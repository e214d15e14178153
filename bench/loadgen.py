"""A lean closed-loop HTTP/1.1 load generator on plain asyncio streams.

Each client owns one keep-alive connection and sends the next request as soon as the
previous response has been read. Requests are pre-encoded bytes and responses are
parsed only as far as the status code and Content-Length, so the client spends far
less CPU per request than the server under test (httpx spends more than the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

HEADER_END = b"\r\n\r\n"
CONNECT_TIMEOUT_SECONDS = 5.0
# A client that loses its connection this many times gives up (the run then ends early).
MAX_RECONNECTS = 20
# Extra time, past the planned duration, that a run may take before it is cut off.
GRACE_SECONDS = 30.0


def encode_request(
    method: str, host: str, port: int, path: str, body: bytes = b"", headers: tuple[tuple[str, str], ...] = ()
) -> bytes:
    """A complete HTTP/1.1 request, ready to write to the socket as is."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: keep-alive"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


class HttpConnection:
    """One keep-alive connection; `request` sends one request and reads its response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> HttpConnection:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT_SECONDS)
        return cls(reader, writer)

    async def request(self, payload: bytes) -> tuple[int, bytes]:
        """Send `payload`; return the status code and the body (Content-Length framing only)."""
        self._writer.write(payload)
        head = await self._reader.readuntil(HEADER_END)
        status = int(head[9:12])
        length = _content_length(head)
        body = await self._reader.readexactly(length) if length else b""
        return status, body

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


def _content_length(head: bytes) -> int:
    lowered = head.lower()
    start = lowered.find(b"\r\ncontent-length:")
    if start < 0:
        if b"\r\ntransfer-encoding:" in lowered:
            raise ValueError("chunked responses are not supported by this load generator")
        return 0
    start += len(b"\r\ncontent-length:")
    return int(lowered[start : lowered.index(b"\r\n", start)])


@dataclass
class LoadResult:
    """What one measured run did; latencies are in seconds, one per completed request."""

    clients: int
    elapsed: float
    latencies: array[float] = field(default_factory=lambda: array("d"))
    unexpected: dict[int, int] = field(default_factory=dict)  # status code -> count, other than expected
    connection_errors: int = 0

    @property
    def errors(self) -> int:
        return sum(self.unexpected.values()) + self.connection_errors

    def describe_errors(self) -> str:
        """E.g. "0", or "12 (503: 10, connection: 2)"."""
        parts = [f"{status}: {count}" for status, count in sorted(self.unexpected.items())]
        if self.connection_errors:
            parts.append(f"connection: {self.connection_errors}")
        return f"{self.errors} ({', '.join(parts)})" if parts else "0"

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0

    def percentile(self, fraction: float) -> float:
        return percentile(sorted(self.latencies), fraction)

    @property
    def max_latency(self) -> float:
        return max(self.latencies, default=0.0)

    def slower_than(self, seconds: float) -> int:
        return sum(1 for latency in self.latencies if latency > seconds)


def percentile(ordered: list[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values (0 when there are none)."""
    if not ordered:
        return 0.0
    rank = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[rank]


@dataclass
class _Plan:
    """Shared by the clients of one run: when to stop and how many requests to send."""

    deadline: float
    limit: int
    expect_status: int
    record: bool
    issued: int = 0
    result: LoadResult = field(default_factory=lambda: LoadResult(clients=0, elapsed=0.0))

    def more(self) -> bool:
        return self.issued < self.limit and time.perf_counter() < self.deadline


async def _client(connection: HttpConnection, host: str, port: int, payload: bytes, plan: _Plan) -> HttpConnection:
    """Send requests back to back until the plan says stop; returns the (maybe new) connection."""
    reconnects = 0
    latencies = plan.result.latencies
    while plan.more():
        plan.issued += 1
        started = time.perf_counter()
        try:
            status, _ = await connection.request(payload)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            plan.result.connection_errors += 1
            await connection.close()
            reconnects += 1
            if reconnects > MAX_RECONNECTS:
                raise
            connection = await HttpConnection.open(host, port)
            continue
        if plan.record:
            latencies.append(time.perf_counter() - started)
        if status != plan.expect_status:
            plan.result.unexpected[status] = plan.result.unexpected.get(status, 0) + 1
    return connection


async def _ticker(plan: _Plan, started: float, interval: float, on_tick: Callable[[int, float], None]) -> None:
    while time.perf_counter() < plan.deadline:
        await asyncio.sleep(interval)
        on_tick(plan.result.requests, time.perf_counter() - started)


class LoadGenerator:
    """`clients` keep-alive connections sending one pre-encoded request in a closed loop."""

    def __init__(self, host: str, port: int, payload: bytes, clients: int, expect_status: int = 202) -> None:
        self.host = host
        self.port = port
        self.payload = payload
        self.clients = clients
        self.expect_status = expect_status
        self._connections: list[HttpConnection] = []

    async def __aenter__(self) -> LoadGenerator:
        self._connections = list(
            await asyncio.gather(*(HttpConnection.open(self.host, self.port) for _ in range(self.clients)))
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(connection.close() for connection in self._connections))
        self._connections = []

    async def warm_up(self, seconds: float) -> None:
        """Load the server for `seconds` without recording anything."""
        await self._run(seconds, limit=2**62, record=False)

    async def measure(
        self,
        seconds: float,
        limit: int = 2**62,
        on_tick: Callable[[int, float], None] | None = None,
        tick_seconds: float = 1.0,
    ) -> LoadResult:
        """Run for `seconds` or until `limit` requests were sent, whichever comes first."""
        return await self._run(seconds, limit, record=True, on_tick=on_tick, tick_seconds=tick_seconds)

    async def _run(
        self,
        seconds: float,
        limit: int,
        record: bool,
        on_tick: Callable[[int, float], None] | None = None,
        tick_seconds: float = 1.0,
    ) -> LoadResult:
        started = time.perf_counter()
        plan = _Plan(deadline=started + seconds, limit=limit, expect_status=self.expect_status, record=record)
        plan.result.clients = self.clients
        ticker = asyncio.create_task(_ticker(plan, started, tick_seconds, on_tick)) if on_tick else None
        try:
            # A TaskGroup: one client failing (or Ctrl-C) cancels the others, and nothing outlives the run.
            async with asyncio.timeout(seconds + GRACE_SECONDS), asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(_client(conn, self.host, self.port, self.payload, plan))
                    for conn in self._connections
                ]
            self._connections = [task.result() for task in tasks]
        finally:
            plan.result.elapsed = time.perf_counter() - started
            if ticker is not None:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
        return plan.result
