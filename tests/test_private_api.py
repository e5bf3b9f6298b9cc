# SPDX-License-Identifier: Apache-2.0

"""One test per private attribute of LiveKit Agents or aiohttp that the plugin relies on
(`_private_api.py`): an upgrade that moves one fails the test named after it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from livekit import rtc
from livekit.agents import APIConnectOptions, stt
from livekit.plugins import baseten
from livekit.plugins.baseten import _private_api

from .fake_tcp import serve
from .test_stt import KEY


@pytest.fixture
async def ws(http: aiohttp.ClientSession) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A connected client WebSocket (to a server that reads and ignores everything)."""

    async def handle(request: web.Request) -> web.WebSocketResponse:
        server_ws = web.WebSocketResponse()
        await server_ws.prepare(request)
        async for _ in server_ws:
            pass
        return server_ws

    app = web.Application()
    app.router.add_get("/", handle)
    runner, port = await serve(app)
    try:
        async with http.ws_connect(f"ws://127.0.0.1:{port}/") as client:
            yield client
    finally:
        await runner.cleanup()


def test_audio_frame_data_is_the_frames_own_buffer() -> None:
    pcm = bytes(range(256)) * 4
    frame = rtc.AudioFrame(data=pcm, sample_rate=16000, num_channels=1, samples_per_channel=512)
    buffer = frame._data
    assert isinstance(buffer, (bytes, bytearray, memoryview))
    assert bytes(buffer) == pcm == bytes(frame.data)
    assert _private_api.audio_frame_buffer(frame) is buffer


async def test_websocket_writer_transport_is_the_connections_transport(
    ws: aiohttp.ClientWebSocketResponse,
) -> None:
    transport = ws._writer.transport
    assert isinstance(transport, asyncio.Transport) and not transport.is_closing()
    assert _private_api.websocket_transport(ws) is transport


async def test_websocket_writer_protocol_pauses_and_drains_with_the_transport(
    ws: aiohttp.ClientWebSocketResponse,
) -> None:
    protocol = ws._writer.protocol
    assert _private_api.websocket_flow_control(ws) is protocol
    assert not protocol.writing_paused
    await asyncio.wait_for(protocol._drain_helper(), 1)  # not paused: at once
    protocol.pause_writing()  # what the transport calls when its buffer is full
    assert protocol.writing_paused
    waiter = asyncio.create_task(_private_api.wait_until_writable(protocol))
    await asyncio.sleep(0)  # let it start waiting
    assert not waiter.done()
    protocol.resume_writing()  # the buffer drained
    await asyncio.wait_for(waiter, 1)


async def test_websocket_heartbeat_is_cancelled_and_stays_off(
    http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse
) -> None:
    async with http.ws_connect(ws._response.url, heartbeat=30.0) as beating:
        assert beating._heartbeat == 30.0 and beating._heartbeat_cb is not None
        _private_api.stop_heartbeat(beating)
        assert beating._heartbeat is None and beating._heartbeat_cb is None
        beating._reset_heartbeat()  # what data received calls: no new ping is scheduled
        assert beating._heartbeat_cb is None


async def test_recognize_stream_input_checks_raise_after_end_and_close(
    http: aiohttp.ClientSession,
) -> None:
    engine = baseten.STT(api_key=KEY, model_endpoint="ws://127.0.0.1:9/", http_session=http)
    stream = engine.stream(conn_options=APIConnectOptions(max_retry=0, timeout=0.5))
    _private_api.check_input_open(stream)
    stream.end_input()
    with pytest.raises(RuntimeError):
        stream._check_input_not_ended()
    await stream.aclose()
    with pytest.raises(RuntimeError):
        stream._check_not_closed()


def test_recognize_stream_start_time_offset_is_a_property() -> None:
    # SpeechStream overrides it to keep the caller's value: the base class must not read or
    # write the offset other than through the property (except in its own retry loop, which
    # the plugin never uses).
    assert isinstance(stt.RecognizeStream.start_time_offset, property)
    assert isinstance(baseten.SpeechStream.start_time_offset, property)


def test_connect_options_interval_for_retry() -> None:
    options = APIConnectOptions(max_retry=3, retry_interval=2.5)
    assert options._interval_for_retry(0) == pytest.approx(0.1)
    assert options._interval_for_retry(1) == pytest.approx(2.5)
    assert _private_api.retry_interval(options, 2) == pytest.approx(2.5)
