# SPDX-License-Identifier: Apache-2.0

"""Every time a speech stream reports is on the caller's timeline: its `start_time_offset`
(LiveKit's `stt_node` sets it to the seconds since the session's audio input started) plus the
seconds of audio pushed before, whatever connections carried that audio."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from livekit.agents import APIConnectOptions, stt
from livekit.plugins import baseten

from .fake_whisper import FakeWhisperServer
from .test_stt import collect, make_stt, push, tone

E = stt.SpeechEventType
F = 0.032
OFFSETS = [0.0, 5.0, 3600.0]


@pytest.fixture
async def server() -> AsyncIterator[FakeWhisperServer]:
    s = await FakeWhisperServer().start()
    yield s
    await s.close()


def assert_on_timeline(events: list[stt.SpeechEvent], offset: float) -> list[stt.SpeechData]:
    """Checks every time the events carry against `offset`; returns the finals."""
    finals = []
    for ev in events:
        for alt in ev.alternatives:
            assert offset <= alt.start_time <= alt.end_time
            for word in alt.words or []:
                start, end = word.start_time, word.end_time
                assert isinstance(start, float) and isinstance(end, float)
                assert word.start_time_offset == offset
                assert alt.start_time <= start <= end <= alt.end_time
        if ev.type == E.FINAL_TRANSCRIPT:
            finals.append(ev.alternatives[0])
    return finals


@pytest.mark.parametrize("offset", OFFSETS)
async def test_times_are_the_callers_across_reconnects(
    server: FakeWhisperServer, http: aiohttp.ClientSession, offset: float
) -> None:
    # Each connection transcribes 10 frames, reads 10 more, and dies: the next one resends
    # the 10 no final covered.
    b = server.behaviour
    b.final_every_frames = 10
    b.close_after_frames = 20
    b.faulty_sessions = 3
    options = APIConnectOptions(max_retry=3, retry_interval=0.01, timeout=5.0)
    stream = make_stt(server, http).stream(conn_options=options)
    stream.start_time_offset = offset  # after stream(), before any audio: as stt_node does
    push(stream, tone(16000, 2.0), 16000)
    stream.end_input()
    events = await collect(stream)
    assert len(server.sessions) == 4
    finals = assert_on_timeline(events, offset)
    # One final per 10 frames of input, each where its audio was: 0.32 s apart.
    assert [f.start_time for f in finals] == pytest.approx([offset + i * 0.32 for i in range(7)])
    assert finals[-1].end_time == pytest.approx(offset + 63 * F)
    ends = [ev.alternatives[0].end_time for ev in events if ev.type == E.END_OF_SPEECH]
    assert ends == [f.end_time for f in finals]


@pytest.mark.parametrize("offset", OFFSETS)
async def test_times_are_the_callers_across_update_options(
    server: FakeWhisperServer, http: aiohttp.ClientSession, offset: float
) -> None:
    stream = make_stt(server, http).stream()
    stream.start_time_offset = offset
    first = tone(16000, 0.64)
    push(stream, first, 16000)
    await server.progress.until(lambda: sum(len(s.audio) for s in server.sessions) >= len(first))
    stream.update_options(vad_threshold=0.7)
    push(stream, tone(16000, 0.64, freq=300.0), 16000)
    stream.end_input()
    finals = assert_on_timeline(await collect(stream), offset)
    assert len(server.sessions) == 2
    times = [t for f in finals for t in (f.start_time, f.end_time)]
    assert times == pytest.approx([offset, offset + 0.64, offset + 0.64, offset + 1.28])


@pytest.mark.parametrize("offset", OFFSETS)
async def test_times_are_the_callers_across_the_drop_bound(
    server: FakeWhisperServer, http: aiohttp.ClientSession, offset: float
) -> None:
    # 40 s pushed before any connection, against 30 s kept: the oldest 10 s are dropped, and
    # the transcript of the rest starts where the rest did.
    stream = make_stt(server, http).stream()
    stream.start_time_offset = offset
    push(stream, tone(16000, 40.0), 16000)
    stream.end_input()
    (final,) = assert_on_timeline(await collect(stream), offset)
    dropped = 1250 - round(30.0 / F)
    assert (final.start_time, final.end_time) == pytest.approx(
        (offset + dropped * F, offset + 40.0)
    )


async def test_the_offset_is_read_as_each_event_is_made(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    # A caller may set (or move) the offset after audio started flowing: each event uses the
    # value it finds.
    server.behaviour.final_every_frames = 10
    stream = make_stt(server, http).stream()
    push(stream, tone(16000, 10 * F), 16000)
    await server.progress.until(lambda: server.transcripts_sent >= 1)
    stream.start_time_offset = 7.0
    push(stream, tone(16000, 10 * F), 16000)
    stream.end_input()
    events = await collect(stream)
    finals = [ev.alternatives[0] for ev in events if ev.type == E.FINAL_TRANSCRIPT]
    assert [f.start_time for f in finals] == pytest.approx([0.0, 7.0 + 10 * F])


async def test_a_negative_offset_is_refused(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    stream = make_stt(server, http).stream()
    with pytest.raises(ValueError, match="non-negative"):
        stream.start_time_offset = -1.0
    assert stream.start_time_offset == 0.0
    await stream.aclose()


async def test_start_of_speech_carries_the_onset_on_the_wall_clock(
    server: FakeWhisperServer, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # LiveKit takes a START_OF_SPEECH's speech_start_time as when the user began (else the
    # event's arrival, which can be after the speech ended): the wall-clock time the
    # transcript's first audio was spoken, for a live microphone, across reconnections too.
    now = [1000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    b = server.behaviour
    b.final_every_frames = 10
    b.close_after_frames = 20
    b.faulty_sessions = 1
    options = APIConnectOptions(max_retry=1, retry_interval=0.01, timeout=5.0)
    stream = make_stt(server, http).stream(conn_options=options)
    stream.start_time_offset = 42.0  # the caller's timeline: not the wall clock's
    push(stream, tone(16000, 40 * F), 16000)  # the first 20 ms frame began at 999.98
    now[0] = 2000.0  # the transcripts come much later
    stream.end_input()
    events = await collect(stream)
    starts = [ev.speech_start_time for ev in events if ev.type == E.START_OF_SPEECH]
    assert starts == pytest.approx([999.98 + i * 10 * F for i in range(4)])
    assert len(server.sessions) == 2


async def test_the_onset_is_never_later_than_now(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    # Audio pushed faster than it plays (a file, recognize()) has no wall-clock place: the
    # onset is then at most the moment the event is made.
    server.behaviour.final_every_frames = 10
    stream = make_stt(server, http).stream()
    push(stream, tone(16000, 20 * F), 16000)
    stream.end_input()
    events = await collect(stream)
    for ev in events:
        if ev.type == E.START_OF_SPEECH:
            assert ev.speech_start_time is not None and ev.speech_start_time <= ev.created_at


async def test_the_fallback_adapter_moves_the_next_stream_onto_its_own_timeline(
    server: FakeWhisperServer, http: aiohttp.ClientSession
) -> None:
    # LiveKit's FallbackAdapter sets each stream it opens to its own offset plus the time
    # since it started: when the first STT fails, the second one's events stay on the
    # adapter's timeline.
    refusing = await FakeWhisperServer().start()
    refusing.behaviour.reject_status = 401
    try:
        first = baseten.STT(api_key="k", model_endpoint=refusing.url, http_session=http)
        second = make_stt(server, http)
        adapter = stt.FallbackAdapter([first, second], retry_interval=60.0)
        changed = asyncio.Event()
        adapter.on("stt_availability_changed", lambda _: changed.set())
        stream = adapter.stream()
        stream.start_time_offset = 100.0
        await asyncio.wait_for(changed.wait(), 10)  # the first one failed: the second listens
        push(stream, tone(16000, 10 * F), 16000)
        stream.end_input()
        finals = [
            ev.alternatives[0] for ev in await collect(stream) if ev.type == E.FINAL_TRANSCRIPT
        ]
        await stream.aclose()
        await adapter.aclose()
    finally:
        await refusing.close()
    (final,) = finals
    # The second stream was opened moments after the adapter's: 100 s and a little.
    assert 100.0 <= final.start_time < 101.0
    assert final.end_time == pytest.approx(final.start_time + 10 * F)
    assert final.words is not None
    assert all(100.0 <= w.start_time_offset < 101.0 for w in final.words)  # type: ignore[operator]
