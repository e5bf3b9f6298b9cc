# SPDX-License-Identifier: Apache-2.0

"""The plugin across an emulated WAN (tests/wan.py): 80 ms round trips with 20 ms of jitter,
and 5 s partitions that heal or end in a reset. No audio is lost and no transcript repeated
across a partition, every stream ends, the retry budget ends in a typed error, and the
health checks notice a partition within the time the docs give."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from livekit.agents import APIConnectionError, APIConnectOptions, APIError, stt
from livekit.plugins import baseten
from livekit.plugins.baseten._spare_socket import HEARTBEAT_S

from .fake_orpheus import FakeOrpheusServer, speech_for
from .fake_whisper import FakeWhisperServer
from .test_stt import collect, push, tone
from .test_tts import assert_spoken, stream_audio
from .wan import Link, WanProxy

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("realtime")]

KEY = "sk-test-wan-0123456789"
WAN = Link.rtt(0.080, jitter_s=0.020)
PARTITION_S = 5.0
FRAME_S = 0.032
E = stt.SpeechEventType


@pytest.fixture
async def orpheus() -> AsyncIterator[FakeOrpheusServer]:
    s = await FakeOrpheusServer().start()
    yield s
    await s.close()


@pytest.fixture
async def whisper() -> AsyncIterator[FakeWhisperServer]:
    s = await FakeWhisperServer().start()
    s.behaviour.final_every_frames = 10
    yield s
    await s.close()


async def wan(port: int) -> WanProxy:
    return await WanProxy(port, WAN, seed=7).start()


def whisper_port(server: FakeWhisperServer) -> int:
    return int(server.url.split(":")[2].split("/")[0])


def assert_tiled(events: list[stt.SpeechEvent], seconds: float) -> None:
    """The finals cover the input once each, in order: no audio lost, none transcribed twice
    (each final is 10 frames on the caller's timeline, the last one what remained)."""
    finals = [ev.alternatives[0] for ev in events if ev.type == E.FINAL_TRANSCRIPT]
    frames = -(-round(seconds * 16000) // 512)
    spans = [(round(f.start_time / FRAME_S), round(f.end_time / FRAME_S)) for f in finals]
    expected = [(i, min(i + 10, frames)) for i in range(0, frames, 10)]
    assert spans == expected


async def paced(stream: stt.SpeechStream, seconds: float) -> None:
    """Pushes `seconds` of audio at real time, as a microphone does."""
    pcm = tone(16000, seconds)
    step = 16000 // 50 * 2 * 10  # 200 ms at a time
    for i in range(0, len(pcm), step):
        push(stream, pcm[i : i + step], 16000)
        await asyncio.sleep(0.2)


async def test_the_bed_delays_each_way_in_order_and_caps_the_bandwidth() -> None:
    echoed = asyncio.Event()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()
        echoed.set()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxy = await WanProxy(port, Link(delay_s=0.04, jitter_s=0.01, bandwidth=200_000)).start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"x")
        start = time.monotonic()
        assert await reader.readexactly(1) == b"x"
        # The TCP handshake's round trip, then one each way, each at least 40 - 10 ms.
        assert time.monotonic() - start >= 2 * 0.03 + 0.06
        payload = bytes(range(256)) * 400  # 100 kB: half a second at 200 kB/s
        start = time.monotonic()
        for i in range(0, len(payload), 1000):  # many chunks, each with its own jitter
            writer.write(payload[i : i + 1000])
        assert await reader.readexactly(len(payload)) == payload  # in order
        assert time.monotonic() - start >= 0.5
        writer.write_eof()  # the end travels through too, and the echo server ends
        assert await reader.read() == b""
        await asyncio.wait_for(echoed.wait(), 5)
        writer.close()
    finally:
        await proxy.close()
        server.close()
        await server.wait_closed()


async def test_tts_and_stt_over_80ms_with_jitter_lose_and_reorder_nothing(
    orpheus: FakeOrpheusServer, whisper: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    tts_wan, stt_wan = await wan(orpheus.port), await wan(whisper_port(whisper))
    try:
        orpheus.behaviour.chunk_bytes = 512  # many small messages, each delayed on its own
        engine = baseten.TTS(
            api_key=KEY, model_endpoint=tts_wan.url(orpheus.ws_url), http_session=http
        )
        engine.prewarm()
        words = "one two three four five six seven eight".split()
        for _ in range(3):
            stream = engine.stream()
            stream.push_text(" ".join(words))
            stream.end_input()
            assert_spoken(await stream_audio(stream), words)
        await engine.aclose()

        recogniser = baseten.STT(
            api_key=KEY, model_endpoint=stt_wan.url(whisper.url), http_session=http
        )
        listening = recogniser.stream()
        push(listening, tone(16000, 2.0), 16000)
        listening.end_input()
        async with listening:
            events = [ev async for ev in listening]
        assert_tiled(events, 2.0)
        await recogniser.aclose()
    finally:
        await tts_wan.close()
        await stt_wan.close()


@pytest.mark.parametrize("reset_connections", [False, True], ids=["heals", "resets"])
async def test_stt_across_a_5s_partition_loses_and_repeats_nothing(
    whisper: FakeWhisperServer, http: aiohttp.ClientSession, reset_connections: bool
) -> None:
    proxy = await wan(whisper_port(whisper))
    try:
        engine = baseten.STT(api_key=KEY, model_endpoint=proxy.url(whisper.url), http_session=http)
        options = APIConnectOptions(max_retry=5, retry_interval=0.5, timeout=10.0)
        stream = engine.stream(conn_options=options)
        events: list[stt.SpeechEvent] = []

        async def consume() -> None:
            async with stream:
                events.extend([ev async for ev in stream])

        consumer = asyncio.create_task(consume())
        push(stream, tone(16000, 1.0), 16000)
        await whisper.progress.until(lambda: whisper.frames_received >= 20)
        partition = asyncio.create_task(
            proxy.partition_for(PARTITION_S, reset_connections=reset_connections)
        )
        await paced(stream, 2.0)  # speech goes on during the partition
        stream.end_input()
        await partition
        await asyncio.wait_for(consumer, 20)
        assert_tiled(events, 3.0)
        # Healed: the connection rode it out (the keepalive allows 15 s of silence). Reset:
        # one reconnection, which resent what no final had covered.
        assert len(whisper.sessions) == (2 if reset_connections else 1)
        await engine.aclose()
    finally:
        await proxy.close()


async def test_stt_keepalive_notices_a_partition_and_reconnects_after_it(
    whisper: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    proxy = await wan(whisper_port(whisper))
    try:
        engine = baseten.STT(api_key=KEY, model_endpoint=proxy.url(whisper.url), http_session=http)
        errors: list[float] = []
        engine.on("error", lambda _: errors.append(time.monotonic()))
        # timeout 2 s: the keepalive pings after 2 s of silence, and gives up 2 s later.
        options = APIConnectOptions(max_retry=10, retry_interval=0.5, timeout=2.0)
        stream = engine.stream(conn_options=options)
        events: list[stt.SpeechEvent] = []

        async def consume() -> None:
            async with stream:
                events.extend([ev async for ev in stream])

        consumer = asyncio.create_task(consume())
        push(stream, tone(16000, 1.0), 16000)
        await whisper.progress.until(lambda: whisper.frames_received >= 20)
        started = time.monotonic()
        partition = asyncio.create_task(proxy.partition_for(PARTITION_S))
        await paced(stream, 1.0)
        await partition
        stream.end_input()
        await asyncio.wait_for(consumer, 20)
        # Noticed within the documented keepalive + timeout (plus a round trip's slack).
        assert errors and errors[0] - started <= 2.0 + 2.0 + 0.5
        assert_tiled(events, 2.0)
        await engine.aclose()
    finally:
        await proxy.close()


async def test_a_partition_outlasting_the_retry_budget_ends_the_stream_with_a_typed_error(
    whisper: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    proxy = await wan(whisper_port(whisper))
    try:
        engine = baseten.STT(api_key=KEY, model_endpoint=proxy.url(whisper.url), http_session=http)
        options = APIConnectOptions(max_retry=2, retry_interval=0.2, timeout=1.0)
        stream = engine.stream(conn_options=options)
        push(stream, tone(16000, 0.5), 16000)
        await whisper.progress.until(lambda: whisper.frames_received >= 10)
        proxy.partition()  # for good
        with pytest.raises(APIError) as raised:
            await collect(stream, timeout=20)
        # Each attempt: 1 s of silence before a health check, 1 s for its answer; then
        # handshakes that get nowhere, each for the 1 s timeout.
        assert isinstance(raised.value, APIConnectionError) and not raised.value.retryable
        assert "after 3 attempts" in str(raised.value)
        await stream.aclose()
        await engine.aclose()
    finally:
        proxy.heal()
        await proxy.close()


@pytest.mark.parametrize("reset_connections", [False, True], ids=["heals", "resets"])
async def test_tts_across_a_5s_partition_mid_utterance(
    orpheus: FakeOrpheusServer, http: aiohttp.ClientSession, reset_connections: bool
) -> None:
    proxy = await wan(orpheus.port)
    try:
        orpheus.behaviour.chunk_bytes = 4800  # 0.1 s of audio per message
        engine = baseten.TTS(
            api_key=KEY, model_endpoint=proxy.url(orpheus.ws_url), http_session=http
        )
        words = [f"word{i}" for i in range(30)]
        stream = engine.stream()
        stream.push_text(" ".join(words))
        stream.end_input()
        audio = bytearray()
        first = asyncio.Event()

        async def consume() -> None:
            async for ev in stream:
                audio.extend(ev.frame.data.tobytes())
                first.set()

        consumer = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), 10)
        await proxy.partition_for(PARTITION_S, reset_connections=reset_connections)
        if reset_connections:
            # Audio had been played: a retry would repeat it, so the stream ends in an error.
            with pytest.raises(APIConnectionError) as raised:
                await asyncio.wait_for(consumer, 10)
            assert not raised.value.retryable
            assert 0 < len(bytes(audio).rstrip(b"\0")) < len(speech_for(words))
        else:
            await asyncio.wait_for(consumer, 10)  # within the 10 s timeout: it resumes
            assert_spoken(bytes(audio), words)
        await stream.aclose()
        await engine.aclose()
    finally:
        await proxy.close()


async def test_an_idle_spares_heartbeat_notices_a_partition_and_a_new_one_is_dialled(
    orpheus: FakeOrpheusServer, http: aiohttp.ClientSession
) -> None:
    proxy = await wan(orpheus.port)
    try:
        engine = baseten.TTS(
            api_key=KEY, model_endpoint=proxy.url(orpheus.ws_url), http_session=http
        )
        errors: list[object] = []
        engine.on("error", errors.append)
        engine.prewarm()
        spare = engine._spare
        assert spare is not None
        await asyncio.wait_for(spare._dialled.wait(), 5)  # the client has it: it is idle now
        keeper = spare._keeper
        assert keeper is not None
        started = time.monotonic()
        proxy.partition()
        # The documented bound: a ping after HEARTBEAT_S of silence, dead half of it later.
        await asyncio.wait_for(asyncio.shield(keeper), 1.5 * HEARTBEAT_S + 1.0)
        assert time.monotonic() - started >= HEARTBEAT_S * 0.5
        proxy.heal()
        await orpheus.progress.until(lambda: orpheus.attempts == 2)
        words = "after the partition".split()
        stream = engine.stream()
        stream.push_text(" ".join(words))
        stream.end_input()
        assert_spoken(await stream_audio(stream), words)
        assert errors == []
        await engine.aclose()
    finally:
        proxy.heal()
        await proxy.close()
