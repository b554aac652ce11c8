"""A TCP proxy for transport tests: counts the bytes each way and can freeze (a dead peer)."""

from __future__ import annotations

import asyncio
import contextlib


class CountingProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target_port``, counting bytes per direction.

    ``freeze()`` stops forwarding in both directions while keeping both sockets
    open: to the server the client looks alive at the TCP level but answers nothing
    (a crashed host behind a NAT). :attr:`upstream_closed` is set when the server
    closes its side of any connection.

    Attributes:
        to_server: Bytes forwarded client → server.
        to_client: Bytes forwarded server → client.
    """

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.to_server = 0
        self.to_client = 0
        self.frozen = False
        self.upstream_closed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> int:
        """Listen on a free port; returns it."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def freeze(self) -> None:
        """Stop forwarding (both directions); sockets stay open."""
        self.frozen = True

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        for task in (
            asyncio.create_task(self._pipe(reader, up_writer, "to_server")),
            asyncio.create_task(self._pipe(up_reader, writer, "to_client")),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counter: str) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    if counter == "to_client":
                        self.upstream_closed.set()
                    break
                if self.frozen:
                    continue
                setattr(self, counter, getattr(self, counter) + len(data))
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            if counter == "to_client":
                self.upstream_closed.set()
        finally:
            if not self.frozen:
                writer.close()

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
