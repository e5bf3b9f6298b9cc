# SPDX-License-Identifier: Apache-2.0

"""baseten.TTS against local Orpheus servers (tests/fake_orpheus.py), WebSocket and predict."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from livekit.agents import (
    APIConnectionError,
    APIConnectOptions,
    APIStatusError,
    APITimeoutError,
    tts,
)
from livekit.agents.metrics import TTSMetrics
from livekit.plugins import baseten
from livekit.plugins.baseten._orpheus import WordChunker, prompt_limit, split_prompt

from .fake_orpheus import FakeOrpheusServer, speech_for

KEY = "sk-test-tts-0123456789"
TOKENS = ["Hel", "lo wor", "ld", ", how", " are", " you", " today?"]
WORDS = "Hello world, how are you today?".split()


@pytest.fixture
async def server() -> AsyncIterator[FakeOrpheusServer]:
    s = await FakeOrpheusServer().start()
    yield s
    await s.close()


def make_tts(endpoint: str, http: aiohttp.ClientSession, **kwargs: object) -> baseten.TTS:
    return baseten.TTS(api_key=KEY, model_endpoint=endpoint, http_session=http, **kwargs)  # type: ignore[arg-type]


def assert_spoken(audio: bytes, words: list[str], syntheses: int = 1) -> None:
    """`audio` is exactly what the server spoke for `words`, in order, plus at most one
    10 ms silence per synthesis: the end-of-segment marker LiveKit's AudioEmitter adds.
    (The fake speech has no zero sample, so the zeros are the markers.)"""
    expected = np.frombuffer(speech_for(words), dtype=np.int16)
    assert np.all(expected != 0)
    samples = np.frombuffer(audio, dtype=np.int16)
    assert np.array_equal(samples[samples != 0], expected)
    assert np.count_nonzero(samples == 0) <= 240 * syntheses


async def stream_audio(stream: tts.SynthesizeStream, timeout: float = 10.0) -> bytes:
    async def run() -> bytes:
        return b"".join([ev.frame.data.tobytes() async for ev in stream])

    try:
        return await asyncio.wait_for(run(), timeout)
    finally:
        await stream.aclose()


# -- WebSocket streaming ---------------------------------------------------------------------


async def test_websocket_sends_metadata_then_whole_words_then_end(
    server: FakeOrpheusServer, http: aiohttp.ClientSession
) -> None:
    engine = make_tts(server.ws_url, http, voice="leo", temperature=0.7, max_tokens=1500)
    assert engine.capabilities.streaming
    stream = engine.stream()
    for token in TOKENS:
        stream.push_text(token)
    stream.end_input()
    audio = await stream_audio(stream)
    (session,) = server.sessions
    assert session.headers["Authorization"] == f"Api-Key {KEY}"
    assert session.metadata == {
        "voice": "leo",
        "max_tokens": 1500,
        "buffer_size": 10,
        "temperature": 0.7,
    }
    assert session.texts[-1] == "__END__"
    sent = session.texts[:-1]
    # Every message is whole words: together they are the text, word for word.
    assert " ".join(sent).split() == WORDS
    assert all(not m.startswith(" ") and not m.endswith(" ") for m in sent)
    assert_spoken(audio, WORDS)


def test_word_chunker_holds_partial_words() -> None:
    chunker = WordChunker()
    out = [chunker.push(t) for t in ["Hel", "lo wor", "ld", " ", "a\nb", "  "]]
    assert out == ["", "Hello", "", "world", "a", "b"]
    assert chunker.push("tail") == "" and chunker.flush() == "tail" and chunker.flush() == ""


async def test_synthesize_works_on_a_websocket_endpoint(
    server: FakeOrpheusServer, http: aiohttp.ClientSession
) -> None:
    frame = await asyncio.wait_for(
        make_tts(server.ws_url, http).synthesize("Good morning to you.").collect(), 10
    )
    assert frame.sample_rate == 24000 and frame.num_channels == 1
    assert_spoken(frame.data.tobytes(), "Good morning to you.".split())


async def test_websocket_reports_ttfb_and_duration(
    server: FakeOrpheusServer, http: aiohttp.ClientSession
) -> None:
    engine = make_tts(server.ws_url, http)
    metrics: list[TTSMetrics] = []
    engine.on("metrics_collected", metrics.append)
    stream = engine.stream()
    stream.push_text("One two three.")
    stream.end_input()
    await stream_audio(stream)
    (m,) = metrics
    assert m.ttfb > 0 and m.audio_duration == pytest.approx(0.3)
    assert m.characters_count == len("One two three.")


async def test_a_stream_with_no_text_ends_without_synthesis(
    server: FakeOrpheusServer, http: aiohttp.ClientSession
) -> None:
    stream = make_tts(server.ws_url, http).stream()
    stream.end_input()
    assert await stream_audio(stream, timeout=5) == b""
    assert all(s.texts == [] for s in server.sessions)


async def test_a_text_message_from_the_server_is_an_error(
    server: FakeOrpheusServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.text_error = "invalid voice 'nobody'"
    stream = make_tts(server.ws_url, http).stream(conn_options=APIConnectOptions(max_retry=0))
    stream.push_text("Hi there.")
    stream.end_input()
    with pytest.raises(APIStatusError, match="invalid voice"):
        await stream_audio(stream)


async def test_a_server_that_never_closes_times_out(
    server: FakeOrpheusServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.close_after_end = False
    options = APIConnectOptions(max_retry=0, timeout=0.5)
    stream = make_tts(server.ws_url, http).stream(conn_options=options)
    stream.push_text("Hi there.")
    stream.end_input()
    with pytest.raises(APITimeoutError):
        await stream_audio(stream)


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_a_refused_handshake_is_not_retried(
    server: FakeOrpheusServer, http: aiohttp.ClientSession, status: int
) -> None:
    server.behaviour.reject_status = status
    stream = make_tts(server.ws_url, http).stream(conn_options=APIConnectOptions(max_retry=3))
    stream.push_text("Hi there.")
    stream.end_input()
    with pytest.raises(APIStatusError) as info:
        await stream_audio(stream)
    assert info.value.status_code == status and server.attempts == 1
    assert KEY not in str(info.value)


# -- HTTP predict ----------------------------------------------------------------------------


async def test_predict_posts_only_what_the_server_reads(
    server: FakeOrpheusServer, http: aiohttp.ClientSession
) -> None:
    engine = make_tts(server.predict_url, http, voice="mia", max_tokens=900)
    assert not engine.capabilities.streaming
    frame = await asyncio.wait_for(engine.synthesize("Nice to meet you.").collect(), 10)
    (session,) = server.sessions
    assert session.headers["Authorization"] == f"Api-Key {KEY}"
    body = session.body or {}
    assert set(body) == {"prompt", "voice", "max_tokens", "temperature", "request_id"}
    assert (body["prompt"], body["voice"], body["max_tokens"], body["temperature"]) == (
        "Nice to meet you.",
        "mia",
        900,
        0.6,
    )
    assert_spoken(frame.data.tobytes(), "Nice to meet you.".split())


@pytest.mark.parametrize("chunk_bytes", [7, 44, 4096])
async def test_predict_strips_a_wav_header_even_when_split(
    server: FakeOrpheusServer, http: aiohttp.ClientSession, chunk_bytes: int
) -> None:
    server.behaviour.wav_header = True
    server.behaviour.chunk_bytes = chunk_bytes
    frame = await asyncio.wait_for(
        make_tts(server.predict_url, http).synthesize("Hi there.").collect(), 10
    )
    assert_spoken(frame.data.tobytes(), ["Hi", "there."])


async def test_predict_streams_audio_before_the_response_ends(
    server: FakeOrpheusServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.gate = asyncio.Event()
    stream = make_tts(server.predict_url, http).synthesize("One two three four five six.")
    first = await asyncio.wait_for(stream.__anext__(), 10)  # while the server holds the rest
    assert first.frame.samples_per_channel > 0
    server.behaviour.gate.set()
    rest = [ev.frame.data.tobytes() async for ev in stream]
    assert_spoken(
        first.frame.data.tobytes() + b"".join(rest), "One two three four five six.".split()
    )
    await stream.aclose()


@pytest.mark.parametrize(("status", "attempts"), [(400, 1), (401, 1), (500, 3)])
async def test_predict_errors_carry_the_body_and_retry_only_5xx(
    server: FakeOrpheusServer, http: aiohttp.ClientSession, status: int, attempts: int
) -> None:
    server.behaviour.reject_status = status
    server.behaviour.error_body = "prompt too long"
    engine = make_tts(server.predict_url, http)
    options = APIConnectOptions(max_retry=2, retry_interval=0.01)
    with pytest.raises(APIStatusError, match="prompt too long") as info:
        await asyncio.wait_for(engine.synthesize("Hi.", conn_options=options).collect(), 10)
    assert info.value.status_code == status
    assert server.attempts == attempts


async def test_predict_splits_long_prompts_at_sentences(
    server: FakeOrpheusServer, http: aiohttp.ClientSession
) -> None:
    sentences = [f"This is sentence number {i} of a long answer." for i in range(300)]
    text = " ".join(sentences)
    frame = await asyncio.wait_for(
        make_tts(server.predict_url, http).synthesize(text).collect(), 20
    )
    prompts = [s.body["prompt"] for s in server.sessions if s.body]
    assert len(prompts) >= 3 and all(len(p) <= 6000 for p in prompts)
    assert all(p.endswith("answer.") for p in prompts)  # cut between sentences
    assert " ".join(prompts) == text
    assert_spoken(frame.data.tobytes(), text.split())


async def test_stream_on_a_predict_endpoint_synthesizes_sentence_by_sentence(
    server: FakeOrpheusServer, http: aiohttp.ClientSession
) -> None:
    stream = make_tts(server.predict_url, http).stream()
    for token in ["The first sentence", " is here. The second", " sentence is there."]:
        stream.push_text(token)
    stream.end_input()
    audio = await stream_audio(stream)
    assert [s.body["prompt"] for s in server.sessions if s.body] == [
        "The first sentence is here.",
        "The second sentence is there.",
    ]
    words = "The first sentence is here. The second sentence is there.".split()
    # Two sentences, each a synthesis with its marker, plus the adapter's own end of segment.
    assert_spoken(audio, words, syntheses=3)


# -- configuration ---------------------------------------------------------------------------


def test_endpoints_built_from_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASETEN_API_KEY", KEY)
    monkeypatch.delenv("BASETEN_MODEL_ENDPOINT", raising=False)
    ws = baseten.TTS(model_id="m1")
    assert ws._endpoint == "wss://model-m1.api.baseten.co/environments/production/websocket"
    assert ws.capabilities.streaming
    predict = baseten.TTS(model_id="m1", transport="predict")
    assert predict._endpoint == "https://model-m1.api.baseten.co/environments/production/predict"
    assert not predict.capabilities.streaming
    chain = baseten.TTS(chain_id="c1", transport="predict")
    assert chain._endpoint == "https://chain-c1.api.baseten.co/environments/production/run_remote"
    assert (ws.model, ws.provider, ws.sample_rate, ws.num_channels) == (
        "orpheus",
        "Baseten",
        24000,
        1,
    )
    assert KEY not in repr(ws)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"api_key": None}, "Baseten API key is required"),
        ({"model_endpoint": None}, "A Baseten endpoint is required"),
        ({"model_endpoint": "ftp://x.example/"}, "invalid Baseten endpoint"),
        ({"transport": "predict"}, "does not match the endpoint"),
        (
            {"model_endpoint": "https://x.example/predict", "buffer_size": 5},
            "WebSocket endpoints only",
        ),
        ({"language": "de"}, "Orpheus' voices are English"),
        ({"model": "kokoro"}, "model must be 'orpheus' or 'qwen3-tts'"),
        ({"voice": ""}, "voice must not be empty"),
        ({"temperature": 0}, "temperature must be in"),
    ],
)
def test_bad_configuration_is_refused(
    monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, object], message: str
) -> None:
    monkeypatch.delenv("BASETEN_API_KEY", raising=False)
    monkeypatch.delenv("BASETEN_MODEL_ENDPOINT", raising=False)
    args: dict[str, object] = {"api_key": KEY, "model_endpoint": "wss://x.example/ws"} | kwargs
    with pytest.raises(ValueError, match=message):
        baseten.TTS(**args)  # type: ignore[arg-type]


async def test_update_options_applies_to_the_next_synthesis(
    server: FakeOrpheusServer, http: aiohttp.ClientSession
) -> None:
    engine = make_tts(server.ws_url, http)
    engine.update_options(voice="zoe", temperature=0.9, max_tokens=100, buffer_size=3)
    await asyncio.wait_for(engine.synthesize("Hi.").collect(), 10)
    assert server.sessions[0].metadata == {
        "voice": "zoe",
        "max_tokens": 100,
        "buffer_size": 3,
        "temperature": 0.9,
    }
    with pytest.raises(ValueError, match="English"):
        engine.update_options(language="fr")


async def test_predict_that_stalls_mid_body_times_out(
    server: FakeOrpheusServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.gate = asyncio.Event()  # never set: the body stops after one chunk
    options = APIConnectOptions(max_retry=0, timeout=0.3)
    stream = make_tts(server.predict_url, http).synthesize("One two three.", conn_options=options)
    with pytest.raises(APITimeoutError):
        await asyncio.wait_for(stream.collect(), 10)
    server.behaviour.gate.set()


async def test_an_unreachable_server_is_a_retryable_connection_error(
    http: aiohttp.ClientSession,
) -> None:
    engine = make_tts("ws://127.0.0.1:9/websocket", http)  # nothing listens on port 9
    stream = engine.stream(conn_options=APIConnectOptions(max_retry=0))
    stream.push_text("Hi.")
    stream.end_input()
    with pytest.raises(APIConnectionError) as info:
        await stream_audio(stream)
    assert info.value.retryable


async def test_a_bug_is_raised_as_itself_not_retried(
    server: FakeOrpheusServer, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: WordChunker, token: str) -> str:
        raise TypeError("a bug in the plugin")

    monkeypatch.setattr(WordChunker, "push", broken)
    stream = make_tts(server.ws_url, http).stream(conn_options=APIConnectOptions(max_retry=3))
    stream.push_text("Hi.")
    stream.end_input()
    with pytest.raises(TypeError, match="a bug in the plugin"):
        await stream_audio(stream)
    assert server.attempts == 1


async def test_a_server_silent_after_end_times_out_even_while_receiving(
    server: FakeOrpheusServer, http: aiohttp.ClientSession
) -> None:
    # As in an LLM turn, the receiver is already waiting when __END__ goes out.
    server.behaviour.speak = False
    server.behaviour.close_after_end = False
    stream = make_tts(server.ws_url, http).stream(
        conn_options=APIConnectOptions(max_retry=0, timeout=0.3)
    )
    stream.push_text("Hello ")  # a whole word: sent at once
    await server.progress.until(lambda: bool(server.sessions and server.sessions[0].texts))
    stream.end_input()
    with pytest.raises(APITimeoutError):
        await stream_audio(stream)


async def test_audio_cut_short_is_an_error_and_not_repeated(
    server: FakeOrpheusServer, http: aiohttp.ClientSession
) -> None:
    server.behaviour.fail_after_bytes = 8192
    engine = make_tts(server.ws_url, http)
    options = APIConnectOptions(max_retry=3, retry_interval=0.01)
    with pytest.raises(APIConnectionError, match="before the end"):
        await asyncio.wait_for(
            engine.synthesize("One two three four five.", conn_options=options).collect(), 10
        )
    assert server.attempts == 1  # audio had played: a retry would say it twice


@pytest.mark.parametrize("code", [1001, 1011])
async def test_only_a_normal_close_ends_a_turn(
    server: FakeOrpheusServer, http: aiohttp.ClientSession, code: int
) -> None:
    server.behaviour.close_code = code
    stream = make_tts(server.ws_url, http).stream(conn_options=APIConnectOptions(max_retry=0))
    stream.push_text("Hello there.")
    stream.end_input()
    with pytest.raises(APIConnectionError):
        await stream_audio(stream)


async def test_a_flush_before_any_text_is_ignored(
    server: FakeOrpheusServer, http: aiohttp.ClientSession
) -> None:
    stream = make_tts(server.ws_url, http).stream()
    stream.flush()
    stream.push_text("Still spoken.")
    stream.end_input()
    assert_spoken(await stream_audio(stream), ["Still", "spoken."])


async def test_the_word_end_marker_is_spoken_not_obeyed(
    server: FakeOrpheusServer, http: aiohttp.ClientSession
) -> None:
    stream = make_tts(server.ws_url, http).stream()
    for token in ["Say ", "__END__", " twice."]:
        stream.push_text(token)
    stream.end_input()
    assert_spoken(await stream_audio(stream), ["Say", "__END__", "twice."])
    assert server.sessions[0].texts.count("__END__") == 1


def test_predict_prompts_fit_max_tokens() -> None:
    assert prompt_limit(2000) == 282  # about what newer servers split at themselves
    assert prompt_limit(100_000) == 6000  # the server's own limit
    text = " ".join(f"Sentence number {i} is right here." for i in range(40))
    pieces = split_prompt(text, prompt_limit(2000))
    assert len(pieces) > 1 and all(len(p) <= 282 for p in pieces)
    assert " ".join(pieces) == text


async def test_stream_on_predict_reuses_one_adapter(
    server: FakeOrpheusServer, http: aiohttp.ClientSession
) -> None:
    engine = make_tts(server.predict_url, http)
    listeners = len(engine._events.get("metrics_collected", set()))
    for _ in range(5):
        await engine.stream().aclose()
    assert len(engine._events.get("metrics_collected", set())) == listeners


@given(
    st.lists(st.text(alphabet="ab.?! ", min_size=1, max_size=40), min_size=1, max_size=60),
    st.integers(min_value=10, max_value=120),
)
def test_split_prompt_keeps_every_character_in_order_within_the_limit(
    parts: list[str], limit: int
) -> None:
    text = " ".join(parts)
    pieces = split_prompt(text, limit) if len(text) > limit else [text]
    assert all(len(p) <= limit for p in pieces) or pieces == [text]
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")
