# SPDX-License-Identifier: Apache-2.0

"""baseten.STT(model="qwen3-asr") against a local Qwen3-ASR server (tests/fake_qwen3_asr.py).

The stream machinery is the Whisper stream's (tests/test_stt.py covers it at length); these
tests cover what the Qwen3-ASR protocol changes, and the existing plugin's Qwen3-ASR defects:
a server silent after a commit hung it, one malformed message killed it, it could end before
its last commit was answered (losing that final), and it reported no usage.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator

import aiohttp
import numpy as np
import pytest
from livekit import rtc
from livekit.agents import (
    APIConnectionError,
    APIConnectOptions,
    APIStatusError,
    APITimeoutError,
    stt,
)
from livekit.agents.types import TimedString
from livekit.plugins import baseten
from livekit.plugins.baseten import _native

from .fake_qwen3_asr import CHUNK_BYTES, FakeQwen3AsrServer, transcription
from .test_stt import collect, push, tone

KEY = "sk-test-qwen3-0123456789"
E = stt.SpeechEventType
NO_RETRY = APIConnectOptions(max_retry=0, timeout=5.0)
RETRY = APIConnectOptions(max_retry=3, retry_interval=0.05, timeout=5.0)


@pytest.fixture
async def server() -> AsyncIterator[FakeQwen3AsrServer]:
    s = await FakeQwen3AsrServer().start()
    yield s
    await s.close()


def make_stt(
    server: FakeQwen3AsrServer, http: aiohttp.ClientSession, **kwargs: object
) -> baseten.STT:
    return baseten.STT(
        model="qwen3-asr",
        api_key=KEY,
        model_endpoint=server.url,
        http_session=http,
        **kwargs,  # type: ignore[arg-type]
    )


def finals(events: list[stt.SpeechEvent]) -> list[stt.SpeechData]:
    return [ev.alternatives[0] for ev in events if ev.type == E.FINAL_TRANSCRIPT]


# -- options and the wire ----------------------------------------------------------------------


async def test_handshake_has_the_protocol_keys_and_the_model_defaults(
    server: FakeQwen3AsrServer, http: aiohttp.ClientSession
) -> None:
    engine = make_stt(server, http)
    assert (engine.model, engine.provider) == ("qwen3-asr", "Baseten")
    caps = engine.capabilities
    assert (caps.streaming, caps.interim_results, caps.offline_recognize) == (True, True, True)
    assert caps.aligned_transcript == "chunk"  # word timestamps are off by default
    stream = engine.stream()
    push(stream, tone(16000, 0.2), 16000)
    stream.end_input()
    await collect(stream)
    assert server.sessions[0].handshake == {
        "whisper_params": {"audio_language": "auto", "show_word_timestamps": False},
        "streaming_params": {
            "enable_partial_transcripts": True,
            "partial_transcript_interval_s": 0.5,
            "final_transcript_max_duration_s": 30,
        },
        "streaming_vad_config": {
            "threshold": 0.5,
            "min_silence_duration_ms": 500,
            "speech_pad_ms": 100,
        },
    }
    assert server.sessions[0].headers["Authorization"] == f"Api-Key {KEY}"


@pytest.mark.parametrize(
    ("language", "sent"),
    [("en", "English"), ("en-US", "English"), ("English", "English"), ("yue", "Cantonese")],
)
async def test_the_language_goes_out_as_qwen3_names_it(
    server: FakeQwen3AsrServer, http: aiohttp.ClientSession, language: str, sent: str
) -> None:
    stream = make_stt(server, http).stream(language=language)
    stream.end_input()
    await collect(stream)
    assert server.sessions[0].handshake is not None
    assert server.sessions[0].handshake["whisper_params"]["audio_language"] == sent


async def test_appends_carry_the_audio_in_100_ms_base64_chunks_then_one_commit(
    server: FakeQwen3AsrServer, http: aiohttp.ClientSession
) -> None:
    audio = tone(48000, 0.53, channels=2)
    stream = make_stt(server, http).stream()
    push(stream, audio, 48000, channels=2)
    stream.end_input()
    await collect(stream)
    (session,) = server.sessions
    assert session.chunk_sizes == [CHUNK_BYTES] * 6  # 0.53 s, the last chunk padded
    assert session.commits == 1 and session.answered == 1
    assert session.other == []  # nothing but appends and the commit
    received = np.frombuffer(bytes(session.audio), dtype=np.int16)
    assert np.abs(received[:8000]).max() > 5000  # the tone, resampled and downmixed
    assert not received[8480 + 100 :].any()  # then the padding


def test_the_append_message_is_built_whole_in_rust() -> None:
    pipeline = _native.AppendPipeline(16000, 1)
    pcm = tone(16000, 0.1)
    (message,) = pipeline.push(pcm)
    assert json.loads(message) == {
        "type": "input_audio_buffer.append",
        "audio": base64.b64encode(pcm).decode(),
    }
    (last,) = pipeline.push(pcm[:100]) or pipeline.flush()  # 50 samples, then the commit
    append, commit = last.split(b"}", 1)
    assert base64.b64decode(json.loads(append + b"}")["audio"]) == pcm[:100] + bytes(3100)
    assert json.loads(commit) == {"type": "input_audio_buffer.commit"}
    assert pipeline.flush() == []  # nothing since the commit: nothing to send


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"encoding": "pcm_mulaw", "sample_rate": 8000}, "16 kHz int16 audio only"),
        ({"language_options": ["en"]}, "language_options is a Whisper option"),
        ({"prompt": "Baseten"}, "prompt is a Whisper option"),
        ({"language": "Klingon"}, "not one Qwen3-ASR transcribes"),
        ({"buffer_size_seconds": 0.5}, r"must be 0\.1 for Qwen3-ASR"),
        ({"sample_rate": 8000}, "16000 Hz only"),
    ],
)
def test_options_qwen3_asr_has_no_place_for_are_refused(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        baseten.STT(model="qwen3-asr", api_key=KEY, model_endpoint="wss://x.example/ws", **kwargs)  # type: ignore[arg-type]


# -- events ----------------------------------------------------------------------------------


async def test_events_of_an_utterance_with_words_and_usage(
    server: FakeQwen3AsrServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.partial_every_chunks = 10
    engine = make_stt(server, http, show_word_timestamps=True)
    assert engine.capabilities.aligned_transcript == "word"
    stream = engine.stream()
    stream.start_time_offset = 7.0
    push(stream, tone(16000, 2.45), 16000)  # 25 chunks, the last padded
    stream.end_input()
    events = await collect(stream)
    assert [ev.type for ev in events] == [
        E.START_OF_SPEECH,
        E.INTERIM_TRANSCRIPT,
        E.INTERIM_TRANSCRIPT,
        E.FINAL_TRANSCRIPT,  # the commit's answer
        E.END_OF_SPEECH,
        E.RECOGNITION_USAGE,  # the existing plugin reported none
    ]
    final = events[3].alternatives[0]
    assert (final.text, final.language) == ("c0 c10 c20", "en")
    assert final.confidence == pytest.approx(0.8)  # the words' mean, not a fixed 1.0
    assert (final.start_time, final.end_time) == pytest.approx((7.0, 9.5))
    assert final.words is not None and all(type(w) is TimedString for w in final.words)
    assert [str(w) for w in final.words] == ["c0", "c10", "c20"]
    times = [t for w in final.words for t in (w.start_time, w.end_time)]
    assert times == pytest.approx([7.0, 8.0, 8.0, 9.0, 9.0, 9.5])
    usage = events[5].recognition_usage
    assert usage is not None and usage.audio_duration == pytest.approx(2.5)


async def test_an_empty_answer_to_a_commit_emits_no_speech(
    server: FakeQwen3AsrServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.final_every_chunks = 5  # the VAD final takes all the audio
    stream = make_stt(server, http).stream()
    push(stream, tone(16000, 0.5), 16000)
    stream.end_input()  # nothing is left: one silent chunk carries the commit
    events = await collect(stream)
    assert [ev.type for ev in events] == [
        E.START_OF_SPEECH,
        E.FINAL_TRANSCRIPT,
        E.END_OF_SPEECH,
        E.RECOGNITION_USAGE,
    ]
    assert server.sessions[0].commits == 1


async def test_recognize_streams_the_buffer_and_joins_the_finals(
    server: FakeQwen3AsrServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.final_every_chunks = 10
    engine = make_stt(server, http)
    frame = rtc.AudioFrame(
        data=tone(16000, 1.5), sample_rate=16000, num_channels=1, samples_per_channel=24000
    )
    event = await asyncio.wait_for(engine.recognize([frame]), 10)
    assert event.type == E.FINAL_TRANSCRIPT
    assert event.alternatives[0].text == "c0 c10"


# -- the existing plugin's defects -----------------------------------------------------------


async def test_a_server_silent_after_a_commit_times_out(
    server: FakeQwen3AsrServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.answer_commits = False
    stream = make_stt(server, http).stream(conn_options=APIConnectOptions(max_retry=0, timeout=0.5))
    push(stream, tone(16000, 0.3), 16000)
    stream.end_input()
    with pytest.raises(APITimeoutError, match="did not answer a commit"):
        await collect(stream, timeout=5)


async def test_a_malformed_message_is_skipped_not_fatal(
    server: FakeQwen3AsrServer, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    server.behaviour.inject = ["{not json", '{"type":"transcription","segments":7}', "[]"]
    stream = make_stt(server, http).stream(conn_options=NO_RETRY)
    push(stream, tone(16000, 0.95), 16000)
    stream.end_input()
    assert [f.text for f in finals(await collect(stream))] == ["c0"]
    assert "malformed" in caplog.text


async def test_the_stream_ends_only_once_every_commit_was_answered(
    server: FakeQwen3AsrServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.commit_delay_s = 0.2  # the first answer comes after the input ended
    stream = make_stt(server, http).stream(conn_options=NO_RETRY)
    push(stream, tone(16000, 0.95), 16000)
    stream.flush()  # commit 1
    push(stream, tone(16000, 0.95), 16000)
    stream.end_input()  # commit 2
    events = await collect(stream)
    # Both answers: the existing plugin ended on the first, losing the second's final.
    assert [f.text for f in finals(events)] == ["c0", "c10"]
    assert server.sessions[0].answered == 2


async def test_a_close_with_a_commit_unanswered_reconnects_and_loses_nothing(
    server: FakeQwen3AsrServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.close_after_chunks = 15
    server.behaviour.faulty_sessions = 1
    audio = tone(16000, 1.95)  # 20 chunks, the last padded
    stream = make_stt(server, http).stream(conn_options=RETRY)
    stream.start_time_offset = 3.0
    push(stream, audio, 16000)
    stream.end_input()
    events = await collect(stream)
    first, second = server.sessions
    assert first.commits == 0 or first.answered == 0
    # Nothing was confirmed on the first connection: all of it went again, in order.
    assert bytes(second.audio) == audio + bytes(20 * CHUNK_BYTES - len(audio))
    (final,) = finals(events)
    assert final.text == "c0 c10"
    assert (final.start_time, final.end_time) == pytest.approx((3.0, 5.0))


async def test_a_close_after_the_answers_ends_the_stream_normally(
    server: FakeQwen3AsrServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.close_after_commit = True
    stream = make_stt(server, http).stream(conn_options=NO_RETRY)
    push(stream, tone(16000, 0.4), 16000)
    stream.end_input()
    assert [f.text for f in finals(await collect(stream))] == ["c0"]
    assert server.handshakes == 1


async def test_a_server_error_is_a_retryable_connection_error(
    server: FakeQwen3AsrServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.error_after_chunks = 2
    stream = make_stt(server, http).stream(conn_options=NO_RETRY)
    push(stream, tone(16000, 0.5), 16000)
    stream.end_input()
    with pytest.raises(APIConnectionError, match="Baseten error: scripted failure") as e:
        await collect(stream)
    assert e.value.retryable


async def test_a_recoverable_error_is_survived(
    server: FakeQwen3AsrServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.inject = [
        json.dumps({"type": "error", "message": "slow down", "recoverable": True})
    ]
    stream = make_stt(server, http).stream(conn_options=NO_RETRY)
    push(stream, tone(16000, 0.5), 16000)
    stream.end_input()
    assert [f.text for f in finals(await collect(stream))] == ["c0"]


async def test_a_refused_handshake_is_a_status_error(
    server: FakeQwen3AsrServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.reject_status = 401
    stream = make_stt(server, http).stream(conn_options=RETRY)
    push(stream, tone(16000, 0.2), 16000)
    stream.end_input()
    with pytest.raises(APIStatusError) as e:
        await collect(stream)
    assert e.value.status_code == 401 and server.handshakes == 1
    assert KEY not in str(e.value) and KEY not in repr(e.value)


async def test_update_options_reconnects_with_the_new_handshake_keeping_the_audio(
    server: FakeQwen3AsrServer, http: aiohttp.ClientSession
) -> None:
    engine = make_stt(server, http)
    stream = engine.stream(conn_options=NO_RETRY)
    audio = tone(16000, 0.6)
    push(stream, audio[: len(audio) // 2], 16000)
    await server.progress.until(lambda: bool(server.sessions and server.sessions[0].audio))
    engine.update_options(language="de", vad_threshold=0.7)
    push(stream, audio[len(audio) // 2 :], 16000)
    stream.end_input()
    assert [f.text for f in finals(await collect(stream))] == ["c0"]
    old, new = server.sessions
    assert old.handshake is not None and new.handshake is not None
    assert old.handshake["whisper_params"]["audio_language"] == "auto"
    assert new.handshake["whisper_params"]["audio_language"] == "German"
    assert new.handshake["streaming_vad_config"]["threshold"] == 0.7
    assert bytes(new.audio[: len(audio)]) == audio  # nothing was confirmed: all of it again
    with pytest.raises(ValueError, match="Whisper option"):
        engine.update_options(language_options=["en"])


def test_a_transcription_names_its_language_by_code() -> None:
    message = transcription([("hola", 0.0, 0.5)], final=True, start=0, end=0.5, language="Spanish")
    parsed = _native.parse_message(json.dumps(message), qwen3=True)
    assert isinstance(parsed, _native.Transcription) and parsed.language == "es"
    error = _native.parse_message('{"type":"error","message":"x"}', qwen3=True)
    assert isinstance(error, _native.ServerError) and error.message == "x"
