# SPDX-License-Identifier: Apache-2.0

"""Connections opened ahead of need: TTS.prewarm() and STT.prewarm(), the spare Orpheus socket
(taken, replaced, and replaced when it dies or grows old unused), keep-alive for predict, and
LiveKit's connection metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from livekit.agents import APIConnectionError, APIConnectOptions, stt
from livekit.agents.metrics import STTMetrics, TTSMetrics
from livekit.plugins import baseten
from livekit.plugins.baseten._spare_socket import SpareSocket
from livekit.plugins.baseten._websocket import connect

from .fake_orpheus import FakeOrpheusServer
from .fake_tcp import CuttableProxy
from .fake_whisper import FakeWhisperServer
from .test_stt import push, tone
from .test_tts import assert_spoken, stream_audio
from .wan import Link, WanProxy

KEY = "sk-test-prewarm-0123456789"
WORDS = "Hello world, how are you today?".split()


@pytest.fixture
async def server() -> AsyncIterator[FakeOrpheusServer]:
    s = await FakeOrpheusServer().start()
    yield s
    await s.close()


class Recorder:
    """A TTS's or STT's metrics and error events."""

    def __init__(self, engine: baseten.TTS | baseten.STT) -> None:
        self.metrics: list[TTSMetrics | STTMetrics] = []
        self.errors: list[object] = []
        engine.on("metrics_collected", self.metrics.append)
        engine.on("error", self.errors.append)


async def speak(engine: baseten.TTS) -> bytes:
    stream = engine.stream()
    stream.push_text(" ".join(WORDS))
    stream.end_input()
    return await stream_audio(stream)


async def test_prewarm_dials_a_spare_each_synthesis_takes_and_the_next_is_dialled_at_once(
    server: FakeOrpheusServer, http: aiohttp.ClientSession
) -> None:
    engine = baseten.TTS(api_key=KEY, model_endpoint=server.ws_url, http_session=http)
    seen = Recorder(engine)
    engine.prewarm()
    await server.progress.until(lambda: server.attempts == 1)  # before any text
    for n in (1, 2):
        assert_spoken(await speak(engine), WORDS)
        # The synthesis ran on the spare, and its replacement was dialled meanwhile.
        await server.progress.until(lambda n=n: server.attempts == n + 1)  # type: ignore[misc]
    spoken = [s for s in server.sessions if s.metadata is not None]
    assert len(spoken) == 2
    assert [m.connection_reused for m in seen.metrics] == [True, True]
    assert seen.errors == []
    await engine.aclose()
    # The last spare is closed with the TTS: its server session ends without text.
    await server.progress.until(lambda: len(server.sessions) == 3)
    assert server.sessions[2].texts == []


async def test_without_prewarm_each_synthesis_dials_its_own_socket_and_no_spare(
    server: FakeOrpheusServer, http: aiohttp.ClientSession
) -> None:
    engine = baseten.TTS(api_key=KEY, model_endpoint=server.ws_url, http_session=http)
    seen = Recorder(engine)
    for _ in range(2):
        assert_spoken(await speak(engine), WORDS)
    assert server.attempts == 2
    assert [m.connection_reused for m in seen.metrics] == [False, False]
    assert all(m.acquire_time > 0 for m in seen.metrics)
    await engine.aclose()


async def test_a_spare_the_server_closed_is_replaced_and_the_caller_sees_no_error(
    server: FakeOrpheusServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.drop_idle = 1
    engine = baseten.TTS(api_key=KEY, model_endpoint=server.ws_url, http_session=http)
    seen = Recorder(engine)
    engine.prewarm()
    # The first spare is closed by the server right away; the plugin notices and redials.
    await server.progress.until(lambda: server.dropped == 1 and server.attempts == 2)
    assert_spoken(await speak(engine), WORDS)
    assert seen.errors == []
    assert [m.connection_reused for m in seen.metrics] == [True]
    assert [s.metadata is not None for s in server.sessions][:1] == [True]
    await engine.aclose()


async def test_a_spare_reset_by_the_network_is_replaced_and_the_caller_sees_no_error(
    server: FakeOrpheusServer, http: aiohttp.ClientSession
) -> None:
    proxy = await CuttableProxy(server.port).start()
    try:
        engine = baseten.TTS(
            api_key=KEY, model_endpoint=proxy.url(server.ws_url), http_session=http
        )
        seen = Recorder(engine)
        engine.prewarm()
        await server.progress.until(lambda: len(server.sessions) == 1)
        proxy.cut()
        await server.progress.until(lambda: len(server.sessions) == 2)
        assert_spoken(await speak(engine), WORDS)
        assert seen.errors == []
        assert [m.connection_reused for m in seen.metrics] == [True]
        assert server.sessions[0].texts == [] and server.sessions[1].metadata is not None
        await engine.aclose()
    finally:
        await proxy.close()


async def test_a_spare_past_its_idle_age_is_closed_and_replaced(
    server: FakeOrpheusServer, http: aiohttp.ClientSession
) -> None:
    dialled: list[aiohttp.ClientWebSocketResponse] = []

    async def dial(timeout: float, heartbeat: float | None) -> aiohttp.ClientWebSocketResponse:
        ws = await connect(http, server.ws_url, api_key=KEY, timeout=timeout, max_msg_size=1024)
        dialled.append(ws)
        return ws

    spare = SpareSocket(dial, refill=True, max_idle_s=0.2)
    spare.prewarm()
    await server.progress.until(lambda: server.attempts == 3)  # two replaced for their age
    acquired = await spare.acquire(timeout=5.0)
    assert acquired.reused and acquired.ws is dialled[2]
    assert dialled[0].closed and dialled[1].closed and not acquired.ws.closed
    await acquired.ws.close()
    await spare.aclose()


async def test_a_spare_that_cannot_be_dialled_leaves_the_synthesis_to_dial_its_own(
    server: FakeOrpheusServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.reject_status = 503
    server.behaviour.faulty_attempts = 1
    engine = baseten.TTS(api_key=KEY, model_endpoint=server.ws_url, http_session=http)
    seen = Recorder(engine)
    engine.prewarm()
    await server.progress.until(lambda: server.attempts == 1)
    assert_spoken(await speak(engine), WORDS)
    assert seen.errors == []
    assert [m.connection_reused for m in seen.metrics] == [False]
    await engine.aclose()


async def test_stt_prewarm_dials_the_first_streams_socket_once(
    http: aiohttp.ClientSession,
) -> None:
    whisper = await FakeWhisperServer().start()
    try:
        whisper.behaviour.final_every_frames = 10
        engine = baseten.STT(api_key=KEY, model_endpoint=whisper.url, http_session=http)
        seen = Recorder(engine)
        engine.prewarm()
        await whisper.progress.until(lambda: whisper.handshakes == 1)
        for _ in range(2):
            stream = engine.stream(conn_options=APIConnectOptions(max_retry=0, timeout=5.0))
            push(stream, tone(16000, 0.5), 16000)
            stream.end_input()
            async with stream:
                events = [ev async for ev in stream]
            assert any(ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT for ev in events)
        # The first stream took the spare; the second dialled its own: none was dialled ahead.
        assert whisper.handshakes == 2
        acquired = [m for m in seen.metrics if isinstance(m, STTMetrics) and not m.audio_duration]
        assert [m.connection_reused for m in acquired] == [True, False]
        assert seen.errors == []
        await engine.aclose()
    finally:
        await whisper.close()


async def test_predict_prewarm_leaves_a_kept_alive_connection_the_synthesis_uses(
    server: FakeOrpheusServer, http: aiohttp.ClientSession
) -> None:
    proxy = await WanProxy(server.port, Link()).start()
    try:
        url = proxy.url(server.predict_url)
        engine = baseten.TTS(api_key=KEY, model_endpoint=url, http_session=http)
        engine.prewarm()
        assert engine._warming is not None
        await engine._warming
        assert proxy.connections == 1 and server.attempts == 0
        frame = await engine.synthesize(" ".join(WORDS)).collect()
        assert_spoken(frame.data.tobytes(), WORDS)
        assert proxy.connections == 1 and server.attempts == 1
        await engine.aclose()
    finally:
        await proxy.close()


async def test_prewarm_then_close_leaves_nothing_running(
    server: FakeOrpheusServer, http: aiohttp.ClientSession
) -> None:
    engine = baseten.TTS(api_key=KEY, model_endpoint=server.ws_url, http_session=http)
    engine.prewarm()
    await engine.aclose()  # while the spare's handshake is in flight
    engine.prewarm()  # after aclose: nothing is dialled
    tasks = {t for t in asyncio.all_tasks() if t.get_name() == "baseten.SpareSocket"}
    assert tasks == set() or all(t.done() for t in tasks)


async def test_a_session_closed_under_a_prewarmed_tts_ends_its_spare_quietly(
    server: FakeOrpheusServer, caplog: pytest.LogCaptureFixture
) -> None:
    # As a LiveKit job ends: the job's HTTP session closes while the TTS still holds a spare.
    http = aiohttp.ClientSession()
    engine = baseten.TTS(api_key=KEY, model_endpoint=server.ws_url, http_session=http)
    engine.prewarm()
    spare = engine._spare
    assert spare is not None
    await asyncio.wait_for(spare._dialled.wait(), 5)
    with caplog.at_level(logging.WARNING, logger="livekit.plugins.baseten"):
        await http.close()

        async def keepers_end() -> None:
            while spare._keeper is not None and not spare._keeper.done():
                await asyncio.wait({spare._keeper})

        # The spare dies with its session; the one redial finds the session closed and stops.
        await asyncio.wait_for(keepers_end(), 10)
    assert server.attempts == 1
    assert caplog.records == []
    # A synthesis on the closed session fails at once, with a typed error.
    stream = engine.stream(conn_options=APIConnectOptions(max_retry=0))
    stream.push_text("too late")
    stream.end_input()
    with pytest.raises(APIConnectionError, match="session is closed"):
        await stream_audio(stream)
    await engine.aclose()
