# SPDX-License-Identifier: Apache-2.0

"""The STT send path: frames the Rust pipeline made whole WebSocket messages, kept in the
stream's ledger, written to the socket's transport from `push_frame` while the socket keeps up
and by the sender task when it pushes back, without ever reordering or losing audio, and with
every time on the input's timeline when the ledger has to drop audio."""

from __future__ import annotations

import asyncio
import json
import math
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from livekit.agents import APIConnectOptions, stt
from livekit.plugins import baseten
from livekit.plugins.baseten import _native
from livekit.plugins.baseten._audio_ledger import AudioLedger
from livekit.plugins.baseten._frame_writer import FrameWriter
from livekit.plugins.baseten.stt import MAX_BUFFERED_AUDIO_S

from . import fake_tcp
from .fake_whisper import FakeWhisperServer, transcription
from .test_stt import KEY, collect, make_stt, push, tone

F = 0.032

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def server() -> AsyncIterator[FakeWhisperServer]:
    s = await FakeWhisperServer().start()
    yield s
    await s.close()


async def serve(handle: Handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_get("/", handle)
    runner, port = await fake_tcp.serve(app)
    return runner, f"ws://127.0.0.1:{port}/"


def padded(pcm: bytes) -> bytes:
    return pcm.ljust(math.ceil(len(pcm) / 1024) * 1024, b"\x00")


async def test_pipeline_frames_and_aiohttps_messages_arrive_whole_and_in_order(
    http: aiohttp.ClientSession,
) -> None:
    received: list[bytes | str] = []

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            received.append(msg.data)
        return ws

    runner, url = await serve(handle)
    pcm = tone(16000, 0.1)
    try:
        async with http.ws_connect(url) as ws:
            ledger = AudioLedger(max_frames=100, frame_seconds=F)
            ledger.open()
            writer = FrameWriter(ws, ledger)
            for mulaw in (False, True):
                pipeline = _native.SendPipeline(
                    16000, 1, "pcm_mulaw" if mulaw else "pcm_s16le", websocket=True
                )
                ledger.push(pipeline.push(pcm) + pipeline.flush())
                assert not writer.pump()  # all written at once
                await ws.send_str("after")  # aiohttp's writer after ours: no interleaving
            await ws.close()
    finally:
        await runner.cleanup()
    s16 = padded(pcm)
    assert received[:5] == [*(s16[i : i + 1024] for i in range(0, len(s16), 1024)), "after"]
    assert [len(m) for m in received[5:]] == [256] * 4 + [5]  # 800 mu-law samples, "after"


async def test_frames_pushed_while_connected_are_written_by_push_frame_itself(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    pcm = tone(16000, 2.0)
    stream = make_stt(server, http).stream()
    await server.progress.until(lambda: bool(server.sessions and server.sessions[0].metadata))
    for i in range(0, len(pcm), 640):
        push(stream, pcm[i : i + 640], 16000)
        # Written before push_frame returned: no task switch between audio and the socket.
        assert stream._ledger.queued == 0
    stream.end_input()
    await collect(stream)
    (session,) = server.sessions
    assert bytes(session.audio) == padded(pcm)


def small_send_buffer_socket(addr_info: Any) -> socket.socket:
    # So that a server that stops reading backs frames up in the client's transport (not in
    # megabytes of kernel buffers), as it does on a real network.
    family, kind, proto, *_ = addr_info
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return sock


async def test_a_server_that_stops_reading_gets_every_frame_in_order_later() -> None:
    # The server reads the metadata, then nothing until `resume`: the client's transport
    # backs up, frames wait in the ledger for the sender task, and nothing may overtake.
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

    runner, url = await serve(handle)
    connector = aiohttp.TCPConnector(socket_factory=small_send_buffer_socket)
    try:
        async with aiohttp.ClientSession(connector=connector) as http:
            engine = baseten.STT(api_key=KEY, model_endpoint=url, http_session=http)
            stream = engine.stream(conn_options=APIConnectOptions(max_retry=0, timeout=10.0))
            pcm = tone(16000, 20.0, freq=330.0)
            await asyncio.wait_for(metadata_in.wait(), 10)
            push(stream, pcm, 16000)  # 625 KB, far more than the socket buffers hold
            queued = stream._ledger.queued
            resume.set()
            stream.end_input()
            await collect(stream, timeout=20)
    finally:
        await runner.cleanup()
    assert queued > 0, "the transport never pushed back"
    assert bytes(audio) == padded(pcm)


async def test_audio_dropped_behind_a_stalled_connection_reconnects_on_the_right_timeline() -> None:
    # The first connection reads the metadata and then nothing, though it stays open: 40 s of
    # audio arrive against a 30 s bound, so audio the connection never took is dropped. Its
    # timeline would jump, so the stream moves to a new connection, which hears the newest
    # 30 s and must be timed from where they begin in the input.
    sessions: list[bytearray] = []
    metadata_in = asyncio.Event()

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()
        audio = bytearray()
        sessions.append(audio)
        metadata_in.set()
        if len(sessions) == 1:
            await asyncio.Event().wait()  # stalled until the client gives up on it
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                audio.extend(msg.data)
            elif json.loads(msg.data).get("type") == "end_audio":
                seconds = len(audio) / 1024 * F
                final = transcription([("all", 0.0, seconds)], final=True, start=0.0, end=seconds)
                await ws.send_str(json.dumps(final))
                await ws.send_str(json.dumps({"type": "end_audio", "body": {"status": "finished"}}))
        return ws

    runner, url = await serve(handle)
    connector = aiohttp.TCPConnector(socket_factory=small_send_buffer_socket)
    pcm = tone(16000, 40.0)
    try:
        async with aiohttp.ClientSession(connector=connector) as http:
            engine = baseten.STT(api_key=KEY, model_endpoint=url, http_session=http)
            errors: list[stt.STTError] = []
            engine.on("error", errors.append)
            stream = engine.stream(conn_options=APIConnectOptions(max_retry=1, timeout=10.0))
            stream.start_time_offset = 5.0
            await asyncio.wait_for(metadata_in.wait(), 10)
            push(stream, pcm, 16000)
            stream.end_input()
            events = await collect(stream, timeout=20)
    finally:
        await runner.cleanup()
    assert len(sessions) == 2
    assert [str(e.error) for e in errors] == ["Baseten fell more than 30s of audio behind"]
    kept = round(MAX_BUFFERED_AUDIO_S / F)
    total = len(pcm) // 1024
    assert bytes(sessions[1]) == pcm[(total - kept) * 1024 :]
    (final,) = [e.alternatives[0] for e in events if e.type == stt.SpeechEventType.FINAL_TRANSCRIPT]
    assert (final.start_time, final.end_time) == pytest.approx((5.0 + (total - kept) * F, 45.0))
