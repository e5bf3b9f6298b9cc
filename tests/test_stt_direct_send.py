# SPDX-License-Identifier: Apache-2.0

"""The STT send path's shortcut: frames pushed while a connection is idle are written straight
to its transport (`_direct_writer.py`), and fall back to the sender task when the server does
not keep up, without ever reordering or losing audio."""

from __future__ import annotations

import asyncio
import json
import math
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from livekit.agents import APIConnectOptions
from livekit.plugins import baseten
from livekit.plugins.baseten._direct_writer import BACKLOG_BYTES, DirectWriter

from .fake_whisper import FakeWhisperServer
from .test_stt import KEY, collect, make_stt, push, tone


@pytest.fixture
async def server() -> AsyncIterator[FakeWhisperServer]:
    s = await FakeWhisperServer().start()
    yield s
    await s.close()


def count_send_bytes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the binary messages sent through aiohttp's own `send_bytes`."""
    sizes: list[int] = []
    original = aiohttp.ClientWebSocketResponse.send_bytes

    async def send_bytes(self: aiohttp.ClientWebSocketResponse, data: bytes, *a: Any) -> None:
        sizes.append(len(data))
        await original(self, data, *a)

    monkeypatch.setattr(aiohttp.ClientWebSocketResponse, "send_bytes", send_bytes)
    return sizes


async def test_the_writer_reaches_aiohttps_transport(http: aiohttp.ClientSession) -> None:
    # DirectWriter reads a private attribute of aiohttp: an aiohttp that moved it would
    # silently send every frame through the (slower) task path. This catches that.
    received: list[bytes] = []

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            received.append(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with http.ws_connect(f"http://127.0.0.1:{port}/") as ws:
            writer = DirectWriter.of(ws)
            assert writer is not None and writer.ready()
            payloads = [bytes(range(256)) * 4, b"x" * 100, b"", bytes(70_000)]
            for p in payloads:
                writer.write(p)
            await ws.send_str("done")  # aiohttp's writer after ours: frames do not interleave
            await ws.close()
        assert received == [*payloads, "done"]
    finally:
        await runner.cleanup()


async def test_frames_pushed_while_connected_skip_the_sender_task(
    server: FakeWhisperServer, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = count_send_bytes(monkeypatch)
    pcm = tone(16000, 2.0)
    stream = make_stt(server, http).stream()
    push(stream, pcm[:1280], 16000)  # two 20 ms frames: one wire frame, before the socket
    await server.progress.until(lambda: server.frames_received >= 1)
    push(stream, pcm[1280:], 16000)
    stream.end_input()
    await collect(stream)
    assert sizes == [1024]  # only the frame queued before the connection took the task path
    (session,) = server.sessions
    assert bytes(session.audio) == pcm.ljust(math.ceil(len(pcm) / 1024) * 1024, b"\x00")


def small_send_buffer_socket(addr_info: Any) -> socket.socket:
    # So that a server that stops reading backs frames up in the client's transport (not in
    # megabytes of kernel buffers), as it does on a real network.
    family, kind, proto, *_ = addr_info
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return sock


async def test_a_server_that_stops_reading_gets_every_frame_in_order_later() -> None:
    # The server reads the metadata, then nothing until `resume`: the client's transport
    # backs up past BACKLOG_BYTES, frames queue for the sender task, and nothing may overtake.
    resume = asyncio.Event()
    metadata_in = asyncio.Event()
    audio = bytearray()

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()
        metadata_in.set()
        await resume.wait()
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                audio.extend(msg.data)
            elif json.loads(msg.data).get("type") == "end_audio":
                await ws.send_str(json.dumps({"type": "end_audio", "body": {"status": "finished"}}))
        return ws

    app = web.Application()
    app.router.add_get("/", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"ws://127.0.0.1:{runner.addresses[0][1]}/"
    connector = aiohttp.TCPConnector(socket_factory=small_send_buffer_socket)
    try:
        async with aiohttp.ClientSession(connector=connector) as http:
            stt = baseten.STT(api_key=KEY, model_endpoint=url, http_session=http)
            stream = stt.stream(conn_options=APIConnectOptions(max_retry=0, timeout=10.0))
            pcm = tone(16000, 20.0, freq=330.0)
            await asyncio.wait_for(metadata_in.wait(), 10)
            push(stream, pcm, 16000)  # 625 KB, far more than the socket buffers hold
            queued = len(stream._outbox)
            resume.set()
            stream.end_input()
            await collect(stream, timeout=20)
    finally:
        await runner.cleanup()
    assert queued > 0, f"the transport never backed up past {BACKLOG_BYTES} bytes"
    assert bytes(audio) == pcm.ljust(math.ceil(len(pcm) / 1024) * 1024, b"\x00")
