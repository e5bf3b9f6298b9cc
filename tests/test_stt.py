# SPDX-License-Identifier: Apache-2.0

"""baseten.STT against a local Baseten-protocol server (tests/fake_whisper.py)."""

from __future__ import annotations

import asyncio
import gc
import math
import ssl
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import trustme
from livekit import rtc
from livekit.agents import (
    APIConnectionError,
    APIConnectOptions,
    APIStatusError,
    APITimeoutError,
    stt,
)
from livekit.agents.metrics import STTMetrics
from livekit.agents.types import TimedString
from livekit.plugins import baseten
from livekit.plugins.baseten import _native
from livekit.plugins.baseten._frame_writer import FrameWriter

from .fake_whisper import FakeWhisperServer
from .oracles import audioop

KEY = "sk-test-0123456789"
E = stt.SpeechEventType


@pytest.fixture
async def server() -> AsyncIterator[FakeWhisperServer]:
    s = await FakeWhisperServer().start()
    yield s
    await s.close()


def make_stt(
    server: FakeWhisperServer, http: aiohttp.ClientSession, **kwargs: object
) -> baseten.STT:
    return baseten.STT(api_key=KEY, model_endpoint=server.url, http_session=http, **kwargs)  # type: ignore[arg-type]


def tone(rate: int, seconds: float, channels: int = 1, freq: float = 440.0) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    mono = (9000 * np.sin(2 * math.pi * freq * t)).astype(np.int16)
    return np.repeat(mono, channels).tobytes() if channels > 1 else mono.tobytes()


def push(stream: stt.SpeechStream, pcm: bytes, rate: int, channels: int = 1) -> None:
    """Pushes `pcm` as 20 ms frames, the way LiveKit delivers audio."""
    step = rate // 50 * channels * 2
    for i in range(0, len(pcm), step):
        chunk = pcm[i : i + step]
        stream.push_frame(
            rtc.AudioFrame(
                data=chunk,
                sample_rate=rate,
                num_channels=channels,
                samples_per_channel=len(chunk) // (2 * channels),
            )
        )


async def collect(stream: stt.SpeechStream, timeout: float = 10.0) -> list[stt.SpeechEvent]:
    """Every event until the stream ends by itself (a hang fails the test)."""

    async def run() -> list[stt.SpeechEvent]:
        return [ev async for ev in stream]

    return await asyncio.wait_for(run(), timeout)


NO_RETRY = APIConnectOptions(max_retry=0, timeout=5.0)


def exception_chain(e: BaseException | None) -> list[BaseException]:
    """`e` and every exception chained to it (causes and contexts)."""
    seen: list[BaseException] = []
    todo = [e]
    while todo:
        x = todo.pop()
        if x is not None and x not in seen:
            seen.append(x)
            todo += [x.__cause__, x.__context__]
    return seen


# -- wire protocol ---------------------------------------------------------------------------


async def test_metadata_is_exactly_what_the_server_accepts(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    stream = make_stt(server, http).stream()
    stream.end_input()
    await collect(stream)
    (session,) = server.sessions
    assert session.headers["Authorization"] == f"Api-Key {KEY}"
    assert session.metadata == {
        "whisper_params": {"audio_language": "en", "show_word_timestamps": True},
        "streaming_params": {
            "encoding": "pcm_s16le",
            "sample_rate": 16000,
            "enable_partial_transcripts": True,
            "partial_transcript_interval_s": 1.0,
            "final_transcript_max_duration_s": 30,
        },
        "streaming_vad_config": {
            "threshold": 0.5,
            "min_silence_duration_ms": 300,
            "speech_pad_ms": 30,
        },
    }
    assert session.control == [{"type": "end_audio"}]


async def test_optional_metadata_only_when_set_and_stream_language_honoured(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    engine = make_stt(server, http, language_options=["en", "de-DE"], prompt="LiveKit, Baseten")
    stream = engine.stream(language="German")
    stream.end_input()
    await collect(stream)
    whisper = server.sessions[0].metadata["whisper_params"]  # type: ignore[index]
    assert whisper == {
        "audio_language": "de",
        "show_word_timestamps": True,
        "language_options": ["en", "de"],
        "prompt": "LiveKit, Baseten",
    }


async def test_s16le_bytes_on_the_wire_equal_the_input_plus_padding(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    pcm = tone(16000, 1.01)
    stream = make_stt(server, http).stream()
    push(stream, pcm, 16000)
    stream.end_input()
    await collect(stream)
    (session,) = server.sessions
    assert set(session.frame_sizes) == {1024}
    assert bytes(session.audio) == pcm.ljust(math.ceil(len(pcm) / 1024) * 1024, b"\x00")


@pytest.mark.parametrize("flavour", ["continuous", "g711"])
async def test_mulaw_sends_8k_mulaw_in_256_byte_frames(
    server: FakeWhisperServer, http: aiohttp.ClientSession, flavour: str
) -> None:
    pcm = tone(8000, 0.5)
    engine = make_stt(server, http, encoding="pcm_mulaw", mulaw_flavour=flavour)
    stream = engine.stream()
    push(stream, pcm, 8000)
    stream.end_input()
    await collect(stream)
    (session,) = server.sessions
    assert session.metadata["streaming_params"]["sample_rate"] == 8000  # type: ignore[index]
    assert session.metadata["streaming_params"]["encoding"] == "pcm_mulaw"  # type: ignore[index]
    assert set(session.frame_sizes) == {256}
    expected = (
        audioop.lin2ulaw(pcm, 2) if flavour == "g711" else _native.mulaw_encode(pcm, "continuous")
    )
    assert bytes(session.audio[: len(expected)]) == expected
    if flavour == "continuous":
        # The server's torchaudio decoder gets the audio back (mu-law's ~1/32 error).
        decoded = session.pcm16()[: len(pcm) // 2].astype(np.float64)
        original = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
        assert np.max(np.abs(decoded - original)) <= 9000 / 16


async def test_any_rate_and_channel_count_is_resampled_to_16k(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    stream = make_stt(server, http).stream()
    push(stream, tone(48000, 1.0, channels=2), 48000, channels=2)
    stream.end_input()
    await collect(stream)
    (session,) = server.sessions
    assert set(session.frame_sizes) == {1024}
    assert len(session.audio) == math.ceil(16000 / 512) * 1024
    received = session.pcm16()[800:15200].astype(np.float64)
    assert np.max(np.abs(received)) == pytest.approx(9000, rel=0.02)


async def test_frames_with_a_changed_sample_rate_are_refused(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    stream = make_stt(server, http).stream()
    push(stream, tone(16000, 0.04), 16000)
    with pytest.raises(ValueError, match="must be consistent"):
        push(stream, tone(24000, 0.04), 24000)
    await stream.aclose()


# -- events ----------------------------------------------------------------------------------


async def test_events_of_an_utterance_and_the_stream_ends_by_itself(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.partial_every_frames = 10
    server.behaviour.final_every_frames = 30
    engine = make_stt(server, http)
    metrics: list[STTMetrics] = []
    got_metrics = asyncio.Event()

    def on_metrics(m: STTMetrics) -> None:
        metrics.append(m)
        if m.audio_duration:
            got_metrics.set()

    engine.on("metrics_collected", on_metrics)
    stream = engine.stream()
    push(stream, tone(16000, 30 * 0.032), 16000)  # exactly one utterance
    stream.end_input()
    events = await collect(stream)
    assert [ev.type for ev in events] == [
        E.START_OF_SPEECH,
        E.INTERIM_TRANSCRIPT,
        E.INTERIM_TRANSCRIPT,
        E.FINAL_TRANSCRIPT,
        E.END_OF_SPEECH,
        E.RECOGNITION_USAGE,  # the audio sent, reported when the stream ends
    ]
    assert all(ev.request_id == stream.request_id != "" for ev in events)
    final = events[3].alternatives[0]
    assert final.text == "f0 f10 f20"
    assert final.language == "en"
    assert final.confidence == pytest.approx(0.9)
    assert (final.start_time, final.end_time) == pytest.approx((0.0, 0.96))
    assert final.words is not None and all(type(w) is TimedString for w in final.words)
    assert [(str(w), w.start_time, w.end_time, w.confidence) for w in final.words] == [
        ("f0", 0.0, 0.32, 0.9),
        ("f10", 0.32, 0.64, 0.9),
        ("f20", 0.64, 0.96, 0.9),
    ]
    usage = events[5].recognition_usage
    assert usage is not None and usage.audio_duration == pytest.approx(0.96)
    await asyncio.wait_for(got_metrics.wait(), 5)  # LiveKit's metrics task saw the usage
    # First the connection (LiveKit's metric for it: no usage, how long the dial took).
    assert [m.audio_duration for m in metrics] == [0.0, pytest.approx(0.96)]
    assert metrics[0].acquire_time > 0 and not metrics[0].connection_reused
    assert metrics[1].streamed


async def test_a_final_with_a_null_language_is_delivered_in_the_configured_language(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.language_code = None
    stream = make_stt(server, http, language="fr").stream()
    push(stream, tone(16000, 0.5), 16000)
    stream.end_input()
    finals = [ev for ev in await collect(stream) if ev.type == E.FINAL_TRANSCRIPT]
    assert len(finals) == 1 and finals[0].alternatives[0].language == "fr"


async def test_without_word_timestamps_segments_are_chunks(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.word_timestamps = False
    engine = make_stt(server, http, show_word_timestamps=False, enable_partial_transcripts=False)
    assert engine.capabilities.aligned_transcript == "chunk"
    assert engine.capabilities.interim_results is False
    stream = engine.stream()
    push(stream, tone(16000, 0.64), 16000)
    stream.end_input()
    (final,) = [ev for ev in await collect(stream) if ev.type == E.FINAL_TRANSCRIPT]
    words = final.alternatives[0].words
    assert words is not None and [str(w) for w in words] == ["f0 f10"]


async def test_recognize_streams_the_buffer_and_joins_the_finals(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.final_every_frames = 20
    engine = make_stt(server, http)
    assert engine.capabilities.offline_recognize
    frame = rtc.AudioFrame(
        data=tone(16000, 50 * 0.032), sample_rate=16000, num_channels=1, samples_per_channel=800
    )
    event = await asyncio.wait_for(engine.recognize([frame]), 10)
    assert event.type == E.FINAL_TRANSCRIPT
    assert event.alternatives[0].text == "f0 f10 f20 f30 f40"


# -- errors and reconnection -----------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_a_refused_handshake_is_a_status_error_after_one_attempt(
    server: FakeWhisperServer, http: aiohttp.ClientSession, status: int
) -> None:
    server.behaviour.reject_status = status
    stream = make_stt(server, http).stream(conn_options=APIConnectOptions(max_retry=3))
    push(stream, tone(16000, 0.1), 16000)
    with pytest.raises(APIStatusError) as info:
        await collect(stream)
    assert info.value.status_code == status
    assert not info.value.retryable
    assert server.handshakes == 1
    for e in exception_chain(info.value):
        assert KEY not in str(e) and KEY not in repr(e)
        assert not isinstance(e, aiohttp.ClientError), "aiohttp errors hold request headers"


async def test_a_server_closing_after_every_final_is_not_reconnected_forever(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.final_every_frames = 5
    server.behaviour.close_after_final = True
    options = APIConnectOptions(max_retry=2, retry_interval=0.01, timeout=5.0)
    stream = make_stt(server, http).stream(conn_options=options)
    push(stream, tone(16000, 10.0), 16000)  # enough audio for ~60 finals
    stream.end_input()
    with pytest.raises(APIConnectionError, match="after 3 attempts"):
        await collect(stream)
    assert server.handshakes == options.max_retry + 1


async def test_a_close_mid_stream_reconnects_and_loses_no_audio(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    # Each connection transcribes 10 frames, then dies after reading 20: the client wrote far
    # more, which the dead socket swallowed unread.
    server.behaviour.final_every_frames = 10
    server.behaviour.close_after_frames = 20
    options = APIConnectOptions(max_retry=10, retry_interval=0.01, timeout=5.0)
    stream = make_stt(server, http).stream(conn_options=options)
    pcm = tone(16000, 2.0)
    push(stream, pcm, 16000)
    stream.end_input()
    events = await collect(stream)
    assert server.handshakes > 1
    # What the servers finished transcribing, connection after connection, is all the audio.
    received = b"".join(s.confirmed_audio() for s in server.sessions)
    assert received == pcm.ljust(math.ceil(len(pcm) / 1024) * 1024, b"\x00")
    # And the transcripts are on one timeline: word f0 of each connection lands where its
    # audio was in the input.
    finals = [ev.alternatives[0] for ev in events if ev.type == E.FINAL_TRANSCRIPT]
    starts = [f.start_time for f in finals]
    assert starts == pytest.approx([i * 10 * 0.032 for i in range(len(finals))])
    # Audio resent after a reconnection is reported once.
    usage = [ev.recognition_usage.audio_duration for ev in events if ev.recognition_usage]
    assert sum(usage) == pytest.approx(len(received) / 1024 * 0.032)


async def test_usage_is_reported_once_five_seconds_of_audio_were_sent(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    # No finals: usage is not tied to them. A short timeout makes the sender check often.
    options = APIConnectOptions(max_retry=0, timeout=0.4)
    stream = make_stt(server, http).stream(conn_options=options)
    await server.progress.until(lambda: bool(server.sessions and server.sessions[0].metadata))
    push(stream, tone(16000, 200 * 0.032), 16000)  # 200 frames: over the 157 that make 5 s

    async def first_usage() -> float:
        async for ev in stream:
            if ev.recognition_usage is not None:
                return ev.recognition_usage.audio_duration
        raise AssertionError("the stream ended without reporting usage")

    # Before the stream ends: all that was sent by then.
    assert await asyncio.wait_for(first_usage(), 5) == pytest.approx(200 * 0.032)
    push(stream, tone(16000, 10 * 0.032), 16000)  # under 5 s more: reported at the end
    stream.end_input()
    rest = [
        ev.recognition_usage.audio_duration for ev in await collect(stream) if ev.recognition_usage
    ]
    assert rest == [pytest.approx(10 * 0.032)]


async def test_audio_sent_in_one_burst_is_reported_at_once(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    stream = make_stt(server, http).stream()
    push(stream, tone(16000, 375 * 0.032), 16000)  # before the connection: sent together
    stream.end_input()
    events = await collect(stream)
    usage = [ev.recognition_usage.audio_duration for ev in events if ev.recognition_usage]
    assert usage == [pytest.approx(375 * 0.032)]


async def test_a_stream_closed_midway_reports_the_audio_it_sent(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.final_every_frames = 20
    engine = make_stt(server, http)
    metrics: list[STTMetrics] = []
    engine.on("metrics_collected", metrics.append)
    stream = engine.stream()
    push(stream, tone(16000, 20 * 0.032), 16000)  # 0.64 s: under the 5 s between reports
    async for ev in stream:
        if ev.type == E.FINAL_TRANSCRIPT:  # the server has had all 20 frames
            break
    await stream.aclose()  # no end_input: LiveKit closes streams this way
    usage = [m.audio_duration for m in metrics if m.audio_duration]  # not the connection's
    assert usage == [pytest.approx(20 * 0.032)]


async def test_a_failed_stream_still_reports_the_audio_it_sent(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.final_every_frames = 5
    server.behaviour.error_after_frames = 12
    engine = make_stt(server, http)
    metrics: list[STTMetrics] = []
    engine.on("metrics_collected", metrics.append)
    stream = engine.stream(conn_options=NO_RETRY)
    push(stream, tone(16000, 16 * 0.032), 16000)
    with pytest.raises(APIConnectionError, match="TRANSCRIPTION_ERROR"):
        await collect(stream)
    await stream.aclose()
    # Usage is audio sent, each frame once: all 16 went out (12 were read before the error),
    # though finals covered only 10.
    usage = [m.audio_duration for m in metrics if m.audio_duration]  # not the connection's
    assert usage == [pytest.approx(16 * 0.032)]


async def test_an_unrecoverable_server_error_surfaces(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.error_after_frames = 3
    stream = make_stt(server, http).stream(conn_options=NO_RETRY)
    push(stream, tone(16000, 0.5), 16000)
    with pytest.raises(APIConnectionError, match="TRANSCRIPTION_ERROR"):
        await collect(stream)


async def test_refused_audio_is_not_retried(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.error_after_frames = 2
    server.behaviour.error_type = "AUDIO_PROCESSING_ERROR"
    stream = make_stt(server, http).stream(conn_options=APIConnectOptions(max_retry=3))
    push(stream, tone(16000, 0.5), 16000)
    with pytest.raises(APIStatusError) as info:
        await collect(stream)
    assert info.value.status_code == 400 and not info.value.retryable
    assert server.handshakes == 1


async def test_a_recoverable_server_error_is_logged_and_survived(
    server: FakeWhisperServer, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    server.behaviour.error_after_frames = 3
    server.behaviour.error_recoverable = True
    stream = make_stt(server, http).stream(conn_options=NO_RETRY)
    push(stream, tone(16000, 0.5), 16000)
    stream.end_input()
    events = await collect(stream)
    assert [ev.type for ev in events if ev.type == E.FINAL_TRANSCRIPT] == [E.FINAL_TRANSCRIPT]
    assert "recoverable error: scripted failure" in caplog.text


async def test_a_server_that_never_finishes_times_out(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.answer_end_audio = False
    options = APIConnectOptions(max_retry=0, timeout=0.5)
    stream = make_stt(server, http).stream(conn_options=options)
    push(stream, tone(16000, 0.2), 16000)
    stream.end_input()
    with pytest.raises(APITimeoutError):
        await collect(stream)


async def test_a_silent_server_is_detected_by_the_keepalive(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.hang = True
    options = APIConnectOptions(max_retry=0, timeout=0.5)
    stream = make_stt(server, http).stream(conn_options=options)
    push(stream, tone(16000, 0.2), 16000)
    with pytest.raises(APITimeoutError):
        await collect(stream)


async def test_a_server_silent_after_end_input_times_out(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.silent_sessions = 99  # reads the audio and end_audio, answers nothing
    options = APIConnectOptions(max_retry=0, timeout=0.5)
    stream = make_stt(server, http).stream(conn_options=options)
    push(stream, tone(16000, 0.2), 16000)
    stream.end_input()
    with pytest.raises(APITimeoutError, match="did not finish"):
        await collect(stream)


async def test_after_a_silent_finish_the_audio_goes_to_a_new_connection(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.silent_sessions = 1
    options = APIConnectOptions(max_retry=1, retry_interval=0.01, timeout=0.3)
    stream = make_stt(server, http).stream(conn_options=options)
    pcm = tone(16000, 0.64)
    push(stream, pcm, 16000)
    stream.end_input()
    finals = [ev for ev in await collect(stream) if ev.type == E.FINAL_TRANSCRIPT]
    assert len(server.sessions) == 2 and bytes(server.sessions[1].audio) == pcm
    assert [f.alternatives[0].text for f in finals] == ["f0 f10"]


async def test_a_send_that_never_returns_still_times_out(
    server: FakeWhisperServer, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server that stops reading blocks the sender, waiting for the socket to drain (TCP
    # backpressure): the deadlines must not depend on the sender getting back to its loop.
    blocked = asyncio.Event()

    async def never_returns(self: FrameWriter) -> None:
        blocked.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(FrameWriter, "pump", lambda self: True)  # the socket takes nothing
    monkeypatch.setattr(FrameWriter, "writable", never_returns)
    stream = make_stt(server, http).stream(conn_options=APIConnectOptions(max_retry=0, timeout=0.3))
    push(stream, tone(16000, 0.1), 16000)
    with pytest.raises(APITimeoutError, match="did not answer"):
        await collect(stream)
    assert blocked.is_set()


async def test_update_options_switches_even_if_the_old_connection_is_silent(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.silent_sessions = 1
    stream = make_stt(server, http).stream(conn_options=APIConnectOptions(timeout=0.3))
    first = tone(16000, 0.64)
    push(stream, first, 16000)
    await server.progress.until(lambda: sum(len(s.audio) for s in server.sessions) >= len(first))
    stream.update_options(vad_threshold=0.6)
    stream.end_input()
    await collect(stream)
    assert len(server.sessions) == 2
    # The silent connection never confirmed its audio: the new one got all of it again.
    assert bytes(server.sessions[1].audio) == first
    assert server.sessions[1].metadata["streaming_vad_config"]["threshold"] == 0.6  # type: ignore[index]


async def test_a_connect_that_hangs_times_out(http: aiohttp.ClientSession) -> None:
    release = asyncio.Event()

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()  # reads the handshake, never answers it
        writer.close()

    tcp = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    engine = baseten.STT(api_key=KEY, model_endpoint=f"ws://127.0.0.1:{port}/", http_session=http)
    stream = engine.stream(conn_options=APIConnectOptions(max_retry=0, timeout=0.3))
    try:
        with pytest.raises(APITimeoutError):
            await collect(stream)
    finally:
        release.set()
        tcp.close()
        await tcp.wait_closed()


async def test_a_connection_pool_that_is_full_is_named_in_the_timeout(
    server: FakeWhisperServer,
) -> None:
    # Every open WebSocket holds one of the session's connections (LiveKit's shared session
    # allows 50 per host): the stream past the limit can only time out, and must say why.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit_per_host=1)) as http:
        engine = make_stt(server, http)
        first = engine.stream()
        await server.progress.until(lambda: len(server.sessions) == 1)
        second = engine.stream(conn_options=APIConnectOptions(max_retry=0, timeout=0.3))
        with pytest.raises(APITimeoutError, match="at most 100 in all, 1 per host connections"):
            await collect(second)
        assert len(server.sessions) == 1
        await first.aclose()
        await engine.aclose()


async def test_idle_streams_send_health_checks(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    stream = make_stt(server, http).stream(conn_options=APIConnectOptions(max_retry=0, timeout=0.2))

    # No audio: the stream must keep the connection alive on its own, and the answers must
    # keep it alive well past one keepalive + timeout (0.4 s) after it opened.
    def health_checks() -> int:
        return sum(c["type"] == "health_check" for s in server.sessions for c in s.control)

    await server.progress.until(lambda: health_checks() >= 8)
    stream.end_input()
    await collect(stream)  # raises if the connection was dropped (no retries)
    assert len(server.sessions) == 1


async def test_update_options_reconnects_with_new_metadata_and_keeps_the_audio(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    engine = make_stt(server, http)
    stream = engine.stream()
    first = tone(16000, 0.64)
    push(stream, first, 16000)
    await server.progress.until(lambda: sum(len(s.audio) for s in server.sessions) >= len(first))
    engine.update_options(vad_threshold=0.7, language="es")
    second = tone(16000, 0.64, freq=300.0)
    push(stream, second, 16000)
    stream.end_input()
    events = await collect(stream)
    assert len(server.sessions) == 2
    assert server.sessions[0].control[0] == {"type": "end_audio"}
    new_meta = server.sessions[1].metadata
    assert new_meta["streaming_vad_config"]["threshold"] == 0.7  # type: ignore[index]
    assert new_meta["whisper_params"]["audio_language"] == "es"  # type: ignore[index]
    assert bytes(server.sessions[0].audio) + bytes(server.sessions[1].audio) == first + second
    finals = [ev.alternatives[0] for ev in events if ev.type == E.FINAL_TRANSCRIPT]
    # Times continue across connections: the second connection starts at 0.64 s.
    times = [t for f in finals for t in (f.start_time, f.end_time)]
    assert times == pytest.approx([0, 0.64, 0.64, 1.28])


async def test_a_long_stream_keeps_memory_flat(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    """Ten minutes of audio, faster than real time: the plugin's own allocations stay flat."""
    server.behaviour.keep_audio = False
    server.behaviour.partial_every_frames = 30
    server.behaviour.final_every_frames = 100
    stream = make_stt(server, http).stream()
    finals = transcripts = 0

    async def consume() -> None:
        nonlocal finals, transcripts
        async for ev in stream:
            finals += ev.type == E.FINAL_TRANSCRIPT
            transcripts += ev.type in (E.FINAL_TRANSCRIPT, E.INTERIM_TRANSCRIPT)
            server.progress.notify()

    consumer = asyncio.create_task(consume())
    second = tone(16000, 1.0)
    plugin_dir = str(Path(baseten.__file__).parent)
    only_plugin = [tracemalloc.Filter(True, plugin_dir + "/*")]
    tracemalloc.start()
    try:
        sizes = []
        for s in range(600):
            push(stream, second, 16000)
            # Pace by what the server has taken (so the outbox never overflows) and by what
            # the consumer has seen (so undelivered events do not count as plugin memory).
            wire_frames = (s + 1) * 16000 // 512
            await server.progress.until(
                lambda n=wire_frames: (
                    server.frames_received >= n - 40  # type: ignore[misc]
                    and transcripts >= server.transcripts_sent
                )
            )
            if s in (59, 599):
                gc.collect()
                snapshot = tracemalloc.take_snapshot().filter_traces(only_plugin)
                sizes.append(sum(stat.size for stat in snapshot.statistics("filename")))
    finally:
        tracemalloc.stop()
    stream.end_input()
    await asyncio.wait_for(consumer, 10)
    assert finals >= 185  # 18750 frames, a final every 100
    growth = sizes[1] - sizes[0]
    assert growth < 64 * 1024, f"plugin allocations grew by {growth} bytes over 9 minutes"


async def test_closing_the_stt_closes_its_streams(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    engine = make_stt(server, http)
    stream = engine.stream()
    push(stream, tone(16000, 0.1), 16000)
    await server.progress.until(lambda: len(server.sessions) == 1)
    await engine.aclose()
    with pytest.raises(RuntimeError, match="input ended"):
        push(stream, tone(16000, 0.1), 16000)
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("baseten.STT")]
    await server.progress.until(lambda: server.sessions[0].closed_by == "client")


@pytest.fixture(scope="module")
def tls_ca() -> trustme.CA:
    return trustme.CA()


async def test_tls_is_verified_by_default(tls_ca: trustme.CA, http: aiohttp.ClientSession) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    server = await FakeWhisperServer().start(ssl_context=server_ctx)
    try:
        stream = make_stt(server, http).stream(conn_options=APIConnectOptions(max_retry=3))
        with pytest.raises(APIConnectionError, match=r"certificate .* failed verification") as info:
            await collect(stream)
        assert not info.value.retryable
        assert server.sessions == []

        # Trusting the CA is done the usual aiohttp way: an http_session whose connector has it.
        client_ctx = ssl.create_default_context()
        tls_ca.configure_trust(client_ctx)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ctx)) as trusted:
            stream = make_stt(server, trusted).stream()
            stream.end_input()
            await collect(stream)
        assert len(server.sessions) == 1
    finally:
        await server.close()


def test_plaintext_to_another_host_warns(caplog: pytest.LogCaptureFixture) -> None:
    baseten.STT(api_key=KEY, model_endpoint="ws://127.0.0.1:9/ws")
    assert "plaintext" not in caplog.text
    baseten.STT(api_key=KEY, model_endpoint="ws://baseten.example/ws")
    assert "plaintext ws://" in caplog.text and KEY not in caplog.text


# -- configuration ---------------------------------------------------------------------------


def test_endpoint_priority_and_templates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASETEN_API_KEY", KEY)
    monkeypatch.setenv("BASETEN_MODEL_ENDPOINT", "wss://env.example/ws")
    assert baseten.STT()._endpoint == "wss://env.example/ws"
    assert (
        baseten.STT(chain_id="c1")._endpoint
        == "wss://chain-c1.api.baseten.co/environments/production/websocket"
    )
    assert (
        baseten.STT(model_id="m1", chain_id="c1")._endpoint
        == "wss://model-m1.api.baseten.co/environments/production/websocket"
    )
    assert baseten.STT(model_endpoint="ws://localhost:1/x", model_id="m1")._endpoint == (
        "ws://localhost:1/x"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"api_key": None}, "Baseten API key is required"),
        ({"model_endpoint": None}, "A Baseten endpoint is required"),
        ({"model_endpoint": "https://model-x.api.baseten.co/predict"}, "expected an wss://"),
        ({"buffer_size_seconds": 0.1}, r"buffer_size_seconds must be 0\.032"),
        ({"sample_rate": 8000}, "decodes pcm_s16le at 16000 Hz only"),
        ({"encoding": "pcm_mulaw", "sample_rate": 16000}, "decodes pcm_mulaw at 8000 Hz only"),
        ({"encoding": "opus"}, "encoding must be"),
        ({"mulaw_flavour": "alaw"}, "mulaw_flavour must be"),
        ({"model": "parakeet"}, "is not supported"),
        ({"vad_threshold": 1.5}, "vad_threshold must be between 0 and 1"),
        ({"final_transcript_max_duration_s": 60}, "between 1 and 30"),
    ],
)
def test_bad_configuration_is_refused(
    monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, object], message: str
) -> None:
    monkeypatch.delenv("BASETEN_API_KEY", raising=False)
    monkeypatch.delenv("BASETEN_MODEL_ENDPOINT", raising=False)
    args: dict[str, object] = {"api_key": KEY, "model_endpoint": "wss://x.example/ws"} | kwargs
    with pytest.raises(ValueError, match=message):
        baseten.STT(**args)  # type: ignore[arg-type]


def test_the_key_never_shows_in_reprs() -> None:
    engine = baseten.STT(api_key=KEY, model_endpoint="wss://x.example/ws")
    assert KEY not in repr(engine)
    assert (engine.model, engine.provider) == ("whisper", "Baseten")


async def test_update_options_refuses_a_wrong_buffer_size(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    engine = make_stt(server, http)
    with pytest.raises(ValueError, match=r"buffer_size_seconds must be 0\.032"):
        engine.update_options(buffer_size_seconds=0.5)
