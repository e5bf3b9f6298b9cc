# SPDX-License-Identifier: Apache-2.0

"""baseten.TTS(model="qwen3-tts") and the voice functions against a Qwen3-TTS server on
127.0.0.1 (tests/fake_qwen3_tts.py): the messages on the wire, the warm socket, the aligned
transcript, and the ways the existing plugin went wrong."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, get_args

import aiohttp
import pytest
from livekit.agents import (
    APIConnectionError,
    APIConnectOptions,
    APIError,
    APIStatusError,
    APITimeoutError,
)
from livekit.agents.metrics import TTSMetrics
from livekit.agents.types import USERDATA_TIMED_TRANSCRIPT, TimedString
from livekit.plugins import baseten
from livekit.plugins.baseten import _qwen3_socket

from .fake_qwen3_tts import WORD_S, FakeQwen3TTSServer
from .test_tts import assert_spoken

KEY = "sk-test-qwen3-0123456789"
TOKENS = ["Hel", "lo there.", " How", " are you", " today?"]
TEXT = "".join(TOKENS)
WORDS = TEXT.split()
ONCE = APIConnectOptions(max_retry=0, timeout=5.0)


@pytest.fixture
async def server() -> AsyncIterator[FakeQwen3TTSServer]:
    s = await FakeQwen3TTSServer().start()
    yield s
    await s.close()


def make_tts(server: FakeQwen3TTSServer, http: aiohttp.ClientSession, **kwargs: Any) -> baseten.TTS:
    kwargs.setdefault("voice", "ada")
    return baseten.TTS(
        model="qwen3-tts", api_key=KEY, model_endpoint=server.url, http_session=http, **kwargs
    )


async def speak(
    engine: baseten.TTS,
    tokens: list[str] = TOKENS,
    conn_options: APIConnectOptions = ONCE,
) -> tuple[bytes, list[TimedString]]:
    """Streams `tokens` through a synthesis; the audio and the timed words on its frames."""
    stream = engine.stream(conn_options=conn_options)
    for token in tokens:
        stream.push_text(token)
    stream.end_input()
    audio, words = bytearray(), []

    async def run() -> None:
        nonlocal words
        async for ev in stream:
            audio.extend(ev.frame.data.tobytes())
            words += ev.frame.userdata.get(USERDATA_TIMED_TRANSCRIPT, [])

    try:
        await asyncio.wait_for(run(), 10)
    finally:
        await stream.aclose()
    return bytes(audio), words


# -- the wire ---------------------------------------------------------------------------------


async def test_a_synthesis_sends_config_then_text_then_done_and_speaks_every_sentence(
    server: FakeQwen3TTSServer, http: aiohttp.ClientSession
) -> None:
    engine = make_tts(server, http)
    assert engine.model == "qwen3-tts" and engine.sample_rate == 24000
    assert engine.capabilities.streaming and not engine.capabilities.aligned_transcript
    audio, words = await speak(engine)
    assert_spoken(audio, WORDS)
    assert words == []
    [conn] = server.connections
    assert conn.headers["Authorization"] == f"Api-Key {KEY}"
    assert conn.messages == [
        {
            "type": "session.config",
            "task_type": "Base",
            "response_format": "pcm",
            "stream_audio": True,
            "speed": 1.0,
            "voice": "ada",
            "language": "Auto",
        },
        *({"type": "input.text", "text": t} for t in TOKENS),
        {"type": "input.done"},
    ]
    await engine.aclose()


async def test_every_option_reaches_the_config_and_extra_config_comes_last(
    server: FakeQwen3TTSServer, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    clip = tmp_path / "ref.wav"
    clip.write_bytes(b"RIFF-and-some-audio")
    engine = make_tts(
        server,
        http,
        voice="ben",
        language="English",
        task_type="CustomVoice",
        instructions="cheerful",
        max_new_tokens=512,
        initial_codec_chunk_frames=4,
        x_vector_only_mode=True,
        ref_audio=str(clip),
        ref_text="the words of the clip",
        word_timestamps=True,
        extra_config={"top_p": 0.9, "language": "German"},
    )
    await speak(engine, ["Hi."])
    assert server.connections[0].messages[0] == {
        "type": "session.config",
        "task_type": "CustomVoice",
        "response_format": "pcm",
        "stream_audio": True,
        "speed": 1.0,
        "voice": "ben",
        "language": "German",
        "instructions": "cheerful",
        "max_new_tokens": 512,
        "initial_codec_chunk_frames": 4,
        "x_vector_only_mode": True,
        "ref_audio": base64.b64encode(b"RIFF-and-some-audio").decode(),
        "ref_text": "the words of the clip",
        "timestamp_type": "word",
        "timestamp_transport_strategy": "sync",
        "top_p": 0.9,
    }
    await engine.aclose()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"voice": ""}, "voice is required"),
        ({"temperature": 0.5}, "temperature apply to model='orpheus'"),
        ({"max_tokens": 100, "buffer_size": 5}, "max_tokens, buffer_size apply"),
        ({"transport": "predict"}, "WebSocket only"),
        ({"model_endpoint": "https://example.com/predict"}, "invalid Baseten endpoint"),
        ({"task_type": "Fancy"}, "task_type must be one of"),
        ({"ref_text": "words"}, "pass ref_audio too"),
        ({"ref_audio": "/no/such/clip.wav"}, "neither an http"),
        ({"max_new_tokens": 0}, "max_new_tokens must be positive"),
        ({"extra_config": {"response_format": "mp3"}}, "may not set"),
        ({"extra_config": {"x": object()}}, "JSON-serializable"),
    ],
)
def test_qwen3_refuses_what_cannot_reach_the_server(kwargs: dict[str, Any], match: str) -> None:
    kwargs = {"voice": "ada", "model_endpoint": "ws://127.0.0.1:9/ws", **kwargs}
    with pytest.raises(ValueError, match=match):
        baseten.TTS(model="qwen3-tts", api_key=KEY, **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [{"task_type": "CustomVoice"}, {"word_timestamps": True}, {"instructions": "calm"},
     {"extra_config": {}}, {"ref_audio": "https://example.com/a.wav"}],
)  # fmt: skip
def test_orpheus_refuses_the_qwen3_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="apply to model='qwen3-tts' only"):
        baseten.TTS(api_key=KEY, model_endpoint="wss://example.com/ws", **kwargs)


def test_ids_build_the_websocket_url_and_update_options_refuses_orpheus_options() -> None:
    engine = baseten.TTS(model="qwen3-tts", api_key=KEY, model_id="abc", voice="ada")
    assert "wss://model-abc.api.baseten.co/environments/production/websocket" in repr(engine)
    assert KEY not in repr(engine)
    with pytest.raises(ValueError, match="apply to model='orpheus' only"):
        engine.update_options(temperature=0.3)
    with pytest.raises(ValueError, match="voice is required"):
        engine.update_options(voice="")
    with pytest.raises(ValueError, match="apply to model='qwen3-tts' only"):
        baseten.TTS(api_key=KEY, model_id="abc").update_options(instructions="calm")


# -- the warm socket --------------------------------------------------------------------------


async def test_one_socket_carries_consecutive_syntheses_and_a_config_goes_out_only_on_change(
    server: FakeQwen3TTSServer, http: aiohttp.ClientSession
) -> None:
    engine = make_tts(server, http)
    await speak(engine, ["One."])
    await speak(engine, ["Two."])
    # The existing plugin could not change these between syntheses.
    engine.update_options(instructions="slowly", max_new_tokens=256, voice="bea")
    audio, _ = await speak(engine, ["Three."])
    assert_spoken(audio, ["Three."])
    [conn] = server.connections
    configs = conn.of_type("session.config")
    assert len(configs) == 2
    assert configs[1]["voice"] == "bea" and configs[1]["instructions"] == "slowly"
    assert configs[1]["max_new_tokens"] == 256
    await engine.aclose()
    assert conn.messages[-1] == {"type": "session.close"}


async def test_prewarm_opens_and_configures_the_socket_the_first_synthesis_uses(
    server: FakeQwen3TTSServer, http: aiohttp.ClientSession
) -> None:
    engine = make_tts(server, http)
    engine.prewarm()
    await server.progress.until(lambda: bool(server.all_messages()))
    assert server.all_messages()[0]["type"] == "session.config"
    audio, _ = await speak(engine, ["Hi."])
    assert_spoken(audio, ["Hi."])
    [conn] = server.connections
    assert len(conn.of_type("session.config")) == 1
    await engine.aclose()


async def test_a_prewarm_that_fails_leaves_nothing_behind(http: aiohttp.ClientSession) -> None:
    engine = baseten.TTS(model="qwen3-tts", api_key=KEY, model_endpoint="ws://127.0.0.1:9/x",
                         http_session=http, voice="ada")  # fmt: skip
    engine.prewarm()
    await engine.aclose()  # waits for the prewarm to fail
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("baseten.")] == []


async def test_a_synthesis_keeps_the_options_it_started_with(
    server: FakeQwen3TTSServer, http: aiohttp.ClientSession
) -> None:
    engine = make_tts(server, http)
    stream = engine.stream(conn_options=ONCE)
    # The existing plugin built the config from the TTS's live options when it got to it.
    engine.update_options(voice="bea")
    stream.push_text("Hi.")
    stream.end_input()
    async for _ in stream:
        pass
    await stream.aclose()
    await speak(engine, ["Again."])
    configs = server.connections[0].of_type("session.config")
    assert [c["voice"] for c in configs] == ["ada", "bea"]
    await engine.aclose()


async def test_a_parked_socket_the_server_closed_is_not_used_to_fail_the_next_synthesis(
    server: FakeQwen3TTSServer, http: aiohttp.ClientSession
) -> None:
    engine = make_tts(server, http)
    await speak(engine, ["One."])
    await server.close_idle_sockets()  # the server's idle limit, while the socket is parked
    # No retries: the existing plugin sent this synthesis down the closed socket and failed.
    audio, _ = await speak(engine, ["Two."])
    assert_spoken(audio, ["Two."])
    assert len(server.connections) == 2
    await engine.aclose()


async def test_a_parked_socket_is_kept_alive_and_given_up_when_a_keepalive_goes_unanswered(
    server: FakeQwen3TTSServer, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_qwen3_socket, "KEEPALIVE_INTERVAL_S", 0.05)
    monkeypatch.setattr(_qwen3_socket, "KEEPALIVE_TIMEOUT_S", 0.2)
    engine = make_tts(server, http)
    await speak(engine, ["One."])
    conn = server.connections[0]

    def keepalives() -> int:
        return len(conn.of_type("input.done")) - 1

    await server.progress.until(lambda: keepalives() >= 3)
    await speak(engine, ["Two."])
    assert len(server.connections) == 1
    server.behaviour.answer_keepalive = False
    sent = keepalives()
    await server.progress.until(lambda: server._sockets == set())  # the client gave it up
    assert keepalives() == sent + 1
    await speak(engine, ["Three."])
    assert len(server.connections) == 2
    await engine.aclose()


async def test_concurrent_syntheses_get_their_own_sockets_and_one_is_kept(
    server: FakeQwen3TTSServer, http: aiohttp.ClientSession
) -> None:
    engine = make_tts(server, http)
    (a, _), (b, _) = await asyncio.gather(speak(engine, ["One."]), speak(engine, ["Two."]))
    assert_spoken(a, ["One."])
    assert_spoken(b, ["Two."])
    assert len(server.connections) == 2
    closed = [c for c in server.connections if c.messages[-1] == {"type": "session.close"}]
    assert len(closed) == 1  # the second to finish found the slot taken
    await speak(engine, ["Three."])
    assert len(server.connections) == 2
    await engine.aclose()


async def test_an_interrupted_synthesis_closes_its_socket_without_a_polite_goodbye(
    server: FakeQwen3TTSServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.gate = asyncio.Event()
    engine = make_tts(server, http)
    stream = engine.stream(conn_options=ONCE)
    stream.push_text("A long answer.")
    stream.end_input()
    await server.progress.until(
        lambda: bool(server.all_messages()[-1:] == [{"type": "input.done"}])
    )
    await stream.aclose()  # the user barged in
    server.behaviour.gate.set()  # the server finds the socket gone when it speaks
    await server.progress.until(lambda: server._sockets == set())
    assert server.connections[0].of_type("session.close") == []
    audio, _ = await speak(engine, ["Next."])
    assert_spoken(audio, ["Next."])
    assert len(server.connections) == 2
    await engine.aclose()


# -- errors -----------------------------------------------------------------------------------


async def test_an_error_event_is_a_status_error_and_the_socket_is_dropped(
    server: FakeQwen3TTSServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.error = "voice 'ada' not found"
    engine = make_tts(server, http)
    with pytest.raises(APIStatusError, match="voice 'ada' not found"):
        await speak(engine, ["Hi."])
    server.behaviour.error = ""
    await speak(engine, ["Hi."])
    assert len(server.connections) == 2
    await engine.aclose()


async def test_silence_after_the_text_times_out_after_conn_options_timeout(
    server: FakeQwen3TTSServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.silent = True  # the existing plugin waited 60 s, whatever the options
    engine = make_tts(server, http)
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(APITimeoutError, match=r"nothing for 0\.3s"):
        await speak(engine, ["Hi."], APIConnectOptions(max_retry=0, timeout=0.3))
    assert loop.time() - began < 3
    await engine.aclose()


async def test_a_malformed_message_is_logged_and_survived(
    server: FakeQwen3TTSServer, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    pcm = b"\x01\x02" * 2400
    server.behaviour.frames = [
        "{not json",
        '{"type": "audio.start", "sentence_index": 0, "sample_rate": 24000}',
        pcm,
        '["a list"]',
        '{"type": "audio.done", "sentence_index": 0}',
        '{"type": "session.done"}',
    ]
    engine = make_tts(server, http)
    with caplog.at_level(logging.WARNING, "livekit.plugins.baseten"):
        audio, _ = await speak(engine, ["Hi."])
    assert audio.rstrip(b"\0") == pcm
    assert any("malformed message" in r.getMessage() for r in caplog.records)
    await engine.aclose()


@pytest.mark.parametrize(
    ("behaviour", "error", "match"),
    [
        ({"sentence_error": "out of memory"}, APIStatusError, "failed sentence 0: out of memory"),
        ({"sample_rate": 16000}, APIError, "16000 Hz"),
        ({"close_mid_audio": True}, APIConnectionError, "closed the connection"),
    ],
)
async def test_a_broken_sentence_is_an_error_never_a_silent_gap(
    server: FakeQwen3TTSServer,
    http: aiohttp.ClientSession,
    behaviour: dict[str, Any],
    error: type[APIError],
    match: str,
) -> None:
    for name, value in behaviour.items():
        setattr(server.behaviour, name, value)
    engine = make_tts(server, http)
    with pytest.raises(error, match=match):
        await speak(engine, ["Hi there."])
    await engine.aclose()


# -- aligned transcript and metrics -----------------------------------------------------------


async def test_the_word_alignment_becomes_the_timed_transcript_on_the_synthesis_timeline(
    server: FakeQwen3TTSServer, http: aiohttp.ClientSession
) -> None:
    engine = make_tts(server, http, word_timestamps=True)
    assert engine.capabilities.aligned_transcript
    audio, words = await speak(engine)
    assert_spoken(audio, WORDS)
    assert [str(w) for w in words] == ["Hello ", "there ", "How ", "are ", "you ", "today "]
    # The second sentence's times start where its audio does, after the first's two words.
    expected = [i * WORD_S for i in range(len(WORDS))]
    assert [w.start_time for w in words] == pytest.approx(expected)
    assert [w.end_time for w in words] == pytest.approx([t + WORD_S for t in expected])
    await engine.aclose()


async def test_a_ragged_alignment_keeps_what_is_timed_and_warns(
    server: FakeQwen3TTSServer, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    server.behaviour.ragged_alignment = True
    engine = make_tts(server, http, word_timestamps=True)
    with caplog.at_level(logging.WARNING, "livekit.plugins.baseten"):
        audio, words = await speak(engine, ["One two three."])
    assert_spoken(audio, ["One", "two", "three."])
    assert [str(w) for w in words] == ["One ", "two "]
    assert any("incomplete word alignment" in r.getMessage() for r in caplog.records)
    await engine.aclose()


async def test_synthesize_and_metrics_report_ttfb_and_duration(
    server: FakeQwen3TTSServer, http: aiohttp.ClientSession
) -> None:
    engine = make_tts(server, http)
    frame = await engine.synthesize(TEXT).collect()
    assert_spoken(frame.data.tobytes(), WORDS)
    metrics: list[TTSMetrics] = []
    engine.on("metrics_collected", metrics.append)
    await speak(engine)
    # (synthesize()'s own metrics may come in late: LiveKit emits them after collect().)
    [m] = [m for m in metrics if m.streamed]
    assert 0 < m.ttfb < 1
    assert m.audio_duration == pytest.approx(len(WORDS) * WORD_S, abs=0.011)
    await engine.aclose()


async def test_a_stream_with_no_text_ends_at_once_and_keeps_the_socket(
    server: FakeQwen3TTSServer, http: aiohttp.ClientSession
) -> None:
    engine = make_tts(server, http)
    audio, _ = await speak(engine, [])
    assert audio == b""
    assert server.connections[0].of_type("input.done") == []
    await speak(engine, ["Hi."])
    assert len(server.connections) == 1
    await engine.aclose()


# -- voices -----------------------------------------------------------------------------------


async def test_register_and_list_voices_on_the_callers_session(
    server: FakeQwen3TTSServer, tmp_path: Path
) -> None:
    requests: list[str] = []

    async def on_request(_: object, __: object, params: aiohttp.TraceRequestStartParams) -> None:
        requests.append(str(params.url))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request)
    clip = tmp_path / "me.MP3"
    clip.write_bytes(b"ID3-some-audio")
    async with aiohttp.ClientSession(trace_configs=[trace]) as http:
        voice = await baseten.register_voice(
            model_endpoint=server.url, name="me", ref_audio_path=str(clip), ref_text="hello",
            api_key=KEY, http_session=http,
        )  # fmt: skip
        listed = await baseten.list_voices(
            model_endpoint=server.url, api_key=KEY, http_session=http
        )
    assert voice["name"] == "me"
    assert listed["uploaded_voices"] == [voice] and listed["voices"] == []
    assert requests == [server.url, server.url]
    assert server.connections[0].messages == [
        {
            "type": "voice.add",
            "name": "me",
            "consent": "user_consent",
            "audio_data": base64.b64encode(b"ID3-some-audio").decode(),
            "audio_format": "mp3",
            "ref_text": "hello",
        }
    ]
    assert server.connections[1].messages == [{"type": "voice.list"}]


async def test_a_refused_voice_is_a_status_error_that_is_also_a_runtime_error(
    server: FakeQwen3TTSServer, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    server.behaviour.voice_reply = {"type": "error", "message": "clip too short"}
    clip = tmp_path / "me.wav"
    clip.write_bytes(b"RIFF")
    with pytest.raises(APIStatusError, match="clip too short") as caught:
        await baseten.register_voice(
            model_endpoint=server.url, name="me", ref_audio_path=str(clip), api_key=KEY,
            http_session=http,
        )  # fmt: skip
    assert isinstance(caught.value, RuntimeError) and not caught.value.retryable


async def test_voice_requests_time_out(
    server: FakeQwen3TTSServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.control_silent = True  # the existing plugin waited forever
    with pytest.raises(APITimeoutError, match=r"within 0\.3s"):
        await baseten.list_voices(
            model_endpoint=server.url, api_key=KEY, http_session=http, timeout=0.3
        )


async def test_voice_requests_outside_a_job_use_a_session_of_their_own(
    server: FakeQwen3TTSServer,
) -> None:
    listed = await baseten.list_voices(model_endpoint=server.url, api_key=KEY)
    assert listed["type"] == "voice.list"


def test_the_public_api_matches_the_existing_plugin() -> None:
    assert {"register_voice", "list_voices"} <= set(baseten.__all__)
    assert set(get_args(baseten.TTSModels)) == {"orpheus", "qwen3-tts"}
