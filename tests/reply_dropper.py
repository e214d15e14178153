"""A TCP proxy between a client and Redis that can lose one reply on purpose.

Armed with a byte string (say, a script's SHA), it forwards the next command containing
it to Redis, waits until Redis answers, then closes the client's connection without
passing the answer on: the command ran, the client never heard. That is what a network
blip after a write looks like, and what makes a client that resends commands run a
script twice.

Set `refusing` to a byte string instead and, for as long as it is set, every connection
that sends a command containing it is closed with the command neither forwarded nor
answered: Redis out of reach for exactly that command.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from pocketqueue.embedded import free_port


class ReplyDropper:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self.armed: bytes | None = None
        self.dropped = 0  # replies lost so far
        self.refusing: bytes | None = None
        self.refused = 0  # connections cut, their command unsent, so far
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="reply-dropper", daemon=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def arm(self, needle: bytes) -> None:
        """Lose the reply to the next command that contains `needle` (once)."""
        self.armed = needle

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _shutdown(self) -> None:
        self._server.close()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            redis_reader, redis_writer = await asyncio.open_connection(*self.upstream)
            to_client = asyncio.create_task(self._pipe(redis_reader, client_writer))
            try:
                await self._forward(client_reader, redis_reader, redis_writer, to_client)
            finally:
                to_client.cancel()
                for writer in (client_writer, redis_writer):
                    writer.close()

    async def _forward(
        self,
        client_reader: asyncio.StreamReader,
        redis_reader: asyncio.StreamReader,
        redis_writer: asyncio.StreamWriter,
        to_client: asyncio.Task[None],
    ) -> None:
        while data := await client_reader.read(65536):
            if self.refusing is not None and self.refusing in data:
                self.refused += 1
                return  # Redis never sees the command; the client's connection just closes
            if self.armed is not None and self.armed in data:
                self.armed = None
                to_client.cancel()  # from now on nothing reaches the client
                with contextlib.suppress(asyncio.CancelledError):
                    await to_client
                redis_writer.write(data)
                await redis_writer.drain()
                await redis_reader.read(65536)  # Redis ran it and answered ...
                self.dropped += 1
                return  # ... and the client never hears: its connection just closes
            redis_writer.write(data)
            await redis_writer.drain()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()


@contextmanager
def reply_dropper(upstream_host: str, upstream_port: int) -> Iterator[ReplyDropper]:
    proxy = ReplyDropper(upstream_host, upstream_port)
    proxy._thread.start()
    proxy._ready.wait(10)
    try:
        yield proxy
    finally:
        asyncio.run_coroutine_threadsafe(proxy._shutdown(), proxy._loop).result(10)
        proxy._loop.call_soon_threadsafe(proxy._loop.stop)
        proxy._thread.join(10)
