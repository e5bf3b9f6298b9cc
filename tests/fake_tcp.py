# SPDX-License-Identifier: Apache-2.0

"""Misbehaving TCP peers on 127.0.0.1, below HTTP: a server that never answers, a proxy that
answers one byte at a time, an abrupt reset, a proxy whose connections can be cut (the base of
tests/wan.py's WAN). They stand in front of (or instead of) the fake Baseten servers, so every
client path meets the same network faults. Also what every fake shares: `serve` (an aiohttp
app on a free port) and `Progress` (waiting for a server's state without polling)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aiohttp import web


async def serve(
    app: web.Application, ssl_context: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int]:
    """`app` on 127.0.0.1 at a free port, over TLS with `ssl_context`: its runner (to clean up)
    and the port."""
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
    port: int = runner.addresses[0][1]
    return runner, port


class Progress:
    """Lets a test wait for a condition on the server's (or its own) state without polling:
    whoever changes that state calls `notify()`."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def notify(self) -> None:
        self._changed.set()

    async def until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        async def wait() -> None:
            while not condition():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)


def reset(transport: asyncio.BaseTransport | None) -> None:
    """Drops the connection with a TCP RST (SO_LINGER 0), not a FIN: what a crashed server or
    a dying load balancer does. Unsent data is discarded."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()
    else:
        transport.close()


class SilentServer:
    """Accepts TCP connections and reads whatever comes, forever, answering nothing."""

    def __init__(self) -> None:
        self.accepted = 0
        self.closed_by_client = 0  # connections the client closed (EOF or reset)
        self.progress = Progress()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> SilentServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def url(self, scheme: str, path: str = "/") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.progress.notify()
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass
        self.closed_by_client += 1
        self.progress.notify()
        writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class DribbleProxy:
    """Forwards to `target_port`, but sends the start of each response (its HTTP head: the
    101 of a WebSocket handshake, or the status line and headers of a predict) one byte at a
    time, `delay` seconds apart. The client's data passes straight through."""

    HEAD_BYTES = 512  # enough to cover a response head; the rest passes through

    def __init__(self, target_port: int, delay: float) -> None:
        self.target_port = target_port
        self.delay = delay
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> DribbleProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def url(self, upstream_url: str) -> str:
        return upstream_url.replace(f":{self.target_port}/", f":{self.port}/")

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        pipes = (
            asyncio.create_task(self._pipe(reader, up_writer, dribble=False)),
            asyncio.create_task(self._pipe(up_reader, writer, dribble=True)),
        )
        self._pipes.update(pipes)
        # Either side closing ends both: a client that gives up must not leave a pipe behind.
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for pipe in pipes:
            pipe.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
        self._pipes.difference_update(pipes)
        for w in (writer, up_writer):
            w.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, dribble: bool
    ) -> None:
        left = self.HEAD_BYTES if dribble else 0
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                while left and data:
                    writer.write(data[:1])
                    await writer.drain()
                    data, left = data[1:], left - 1
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()

    async def close(self) -> None:
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class TcpProxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`target_port`, each connection relayed by
    `_relay` until either side ends. `reset_open()` drops every connection open at that moment,
    both ways, with a TCP reset, as a network failure between client and server would."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.connections = 0  # accepted so far
        self._server: asyncio.Server | None = None
        self._open: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self: P, port: int = 0) -> P:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def url(self, upstream_url: str) -> str:
        return upstream_url.replace(f":{self.target_port}/", f":{self.port}/")

    def reset_open(self) -> int:
        """Resets every open connection; returns how many."""
        pairs = list(self._open)
        for client, upstream in pairs:
            reset(client.transport)
            reset(upstream.transport)
        return len(pairs)

    async def _admit(self) -> None:
        """Waits until a new connection may reach the target."""

    def _relay(
        self,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> list[Coroutine[Any, Any, None]]:
        """What carries one connection: it ends when the first of these returns."""
        return [_pipe(client[0], upstream[1]), _pipe(upstream[0], client[1])]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            await self._admit()
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            pair = (writer, up_writer)
            self._open.add(pair)
            relays = [
                asyncio.create_task(c)
                for c in self._relay((reader, writer), (up_reader, up_writer))
            ]
            await asyncio.wait(relays, return_when=asyncio.FIRST_COMPLETED)
            for relay in relays:
                relay.cancel()
            await asyncio.gather(*relays, return_exceptions=True)
            self._open.discard(pair)
            for w in pair:
                w.close()
        except asyncio.CancelledError:
            # close(): ended here, not cancelled, or asyncio's server callback, which asks the
            # task for its exception, logs the cancellation as an error.
            pass
        finally:
            self._tasks.discard(task)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


P = TypeVar("P", bound=TcpProxy)


class CuttableProxy(TcpProxy):
    """Forwards to `target_port` untouched, until `cut()` resets every connection open at that
    moment, both ways. Connections made after the cut pass as before."""

    def __init__(self, target_port: int) -> None:
        super().__init__(target_port)
        self.cuts = 0

    def cut(self) -> None:
        self.cuts += 1
        self.reset_open()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
