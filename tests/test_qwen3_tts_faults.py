# SPDX-License-Identifier: Apache-2.0

"""Faults on the Qwen3-TTS paths: the synthesis stream and the voice requests, given a broken
network or a hostile server (tests/fake_qwen3_tts.py, tests/fake_tcp.py). Each test asserts a
typed outcome within a bound. For the whole module, `scan` listens to every log record at DEBUG
and to everything the tests see, and fails the module if the API key shows up anywhere."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiohttp
import pytest
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from livekit.agents import (
    APIConnectionError,
    APIConnectOptions,
    APIError,
    APIStatusError,
    APITimeoutError,
)
from livekit.plugins import baseten
from livekit.plugins.baseten._qwen3_tts import word_timings

from .fake_qwen3_tts import FakeQwen3TTSServer
from .fake_tcp import SilentServer
from .secret_scan import SecretScan, exception_chain
from .test_tts import assert_spoken

KEY = "bt-Qwen3Faults-5Tz8Lp2Wq7Xk"
BOUND = 10.0
TEXT = "Hi there. How are you?"
RETRY = APIConnectOptions(max_retry=2, retry_interval=0.05, timeout=5.0)
QUICK = APIConnectOptions(max_retry=0, timeout=0.3)
Path_ = Literal["synthesis", "voices"]
PATHS: list[Path_] = ["synthesis", "voices"]
E = TypeVar("E", bound=BaseException)


# The scan's verdict covers the whole module: its tests run in one worker.
pytestmark = pytest.mark.xdist_group("secret-scan-qwen3-tts")


@pytest.fixture(scope="module", autouse=True)
def scan() -> Iterator[SecretScan]:
    scanner = SecretScan(KEY)
    scanner.install()
    try:
        yield scanner
    finally:
        scanner.uninstall()
    leaks = scanner.findings()
    assert not leaks, "the API key leaked:\n" + "\n".join(map(str, leaks[:20]))
    assert scanner.records > 0, "the scan heard no log record at all: it is not listening"


@pytest.fixture
async def server() -> AsyncIterator[FakeQwen3TTSServer]:
    s = await FakeQwen3TTSServer().start()
    yield s
    await s.close()


async def synthesis(
    url: str, http: aiohttp.ClientSession, scan: SecretScan, options: APIConnectOptions
) -> bytes:
    engine = baseten.TTS(model="qwen3-tts", api_key=KEY, model_endpoint=url, http_session=http,
                         voice="ada", word_timestamps=True)  # fmt: skip
    engine.on("metrics_collected", lambda m: scan.see("metrics", m))
    engine.on("error", lambda e: scan.see("error event", e))
    scan.see("plugin", engine)
    stream = engine.stream(conn_options=options)
    stream.push_text(TEXT)
    stream.end_input()
    audio = bytearray()
    try:
        async for ev in stream:
            scan.see("event", ev)
            audio += ev.frame.data.tobytes()
    finally:
        await stream.aclose()
        await engine.aclose()
    return bytes(audio)


async def voices(url: str, http: aiohttp.ClientSession, options: APIConnectOptions) -> object:
    return await baseten.list_voices(
        model_endpoint=url, api_key=KEY, http_session=http, timeout=options.timeout
    )


def run(
    path: Path_, url: str, http: aiohttp.ClientSession, scan: SecretScan, options: APIConnectOptions
) -> Awaitable[object]:
    return (
        synthesis(url, http, scan, options) if path == "synthesis" else voices(url, http, options)
    )


async def expect(scan: SecretScan, kind: type[E], outcome: Awaitable[object]) -> E:
    """The exception `outcome` raises, exactly of type `kind`, within the bound; its whole
    chain goes to the scan, and none of it is aiohttp's (whose request info holds the key)."""
    try:
        async with asyncio.timeout(BOUND):
            await outcome
    except BaseException as e:
        scan.see("raised", e)
        assert type(e) is kind, f"expected {kind.__name__}, got {e!r}"
        assert not [x for x in exception_chain(e) if isinstance(x, aiohttp.ClientError)]
        return e
    raise AssertionError(f"expected {kind.__name__}, but it succeeded")


# -- handshakes and the network ---------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("status", [401, 403, 404])
async def test_a_4xx_handshake_is_a_status_error_never_retried_and_keyless(
    server: FakeQwen3TTSServer,
    http: aiohttp.ClientSession,
    scan: SecretScan,
    path: Path_,
    status: int,
) -> None:
    server.behaviour.reject_status = status
    e = await expect(scan, APIStatusError, run(path, server.url, http, scan, RETRY))
    assert e.status_code == status and not e.retryable
    assert len(server.connections) == 1


async def test_a_503_handshake_is_retried_and_then_speaks(
    server: FakeQwen3TTSServer, http: aiohttp.ClientSession, scan: SecretScan
) -> None:
    server.behaviour.reject_status = 503
    outcome = asyncio.ensure_future(synthesis(server.url, http, scan, RETRY))
    await server.progress.until(lambda: len(server.connections) == 1)
    server.behaviour.reject_status = 0
    assert_spoken(await asyncio.wait_for(outcome, BOUND), TEXT.split())
    assert len(server.connections) == 2


@pytest.mark.parametrize("path", PATHS)
async def test_a_refused_connection_is_a_retryable_connection_error(
    http: aiohttp.ClientSession, scan: SecretScan, path: Path_
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    e = await expect(scan, APIConnectionError, run(path, f"ws://127.0.0.1:{port}/x", http, scan,
                                                   QUICK))  # fmt: skip
    assert e.retryable


@pytest.mark.parametrize("path", PATHS)
async def test_a_server_that_accepts_and_never_answers_times_out(
    http: aiohttp.ClientSession, scan: SecretScan, path: Path_
) -> None:
    silent = await SilentServer().start()
    try:
        await expect(scan, APITimeoutError, run(path, silent.url("ws"), http, scan, QUICK))
        assert silent.accepted == 1
    finally:
        await silent.close()


async def test_register_voice_with_a_bad_key_raises_no_aiohttp_error(
    server: FakeQwen3TTSServer, http: aiohttp.ClientSession, scan: SecretScan, tmp_path: Path
) -> None:
    server.behaviour.reject_status = 401
    clip = tmp_path / "me.wav"
    clip.write_bytes(b"RIFF")
    register = baseten.register_voice(
        model_endpoint=server.url, name="me", ref_audio_path=str(clip), api_key=KEY,
        http_session=http,
    )  # fmt: skip
    e = await expect(scan, APIStatusError, register)
    assert e.status_code == 401
    # The existing plugin let aiohttp's WSServerHandshakeError out, request headers and all.
    assert KEY not in repr(e.__cause__) + repr(e.__context__)


async def test_a_connection_cut_mid_audio_is_never_retried(
    server: FakeQwen3TTSServer, http: aiohttp.ClientSession, scan: SecretScan
) -> None:
    server.behaviour.close_mid_audio = True
    e = await expect(scan, APIConnectionError, synthesis(server.url, http, scan, RETRY))
    assert not e.retryable  # audio reached the listener: a retry would say it twice
    assert len(server.connections) == 1


async def test_a_connection_reset_before_any_audio_is_retried_on_a_new_socket(
    server: FakeQwen3TTSServer, http: aiohttp.ClientSession, scan: SecretScan
) -> None:
    server.behaviour.reset_on_config = True
    outcome = asyncio.ensure_future(synthesis(server.url, http, scan, RETRY))
    await server.progress.until(lambda: any(c.closed_by_server for c in server.connections))
    server.behaviour.reset_on_config = False
    assert_spoken(await asyncio.wait_for(outcome, BOUND), TEXT.split())
    assert len(server.connections) == 2
    server.behaviour.reset_on_config = True
    e = await expect(scan, APIConnectionError, synthesis(server.url, http, scan, QUICK))
    assert e.retryable


async def test_aclose_during_connect_returns_at_once_and_leaves_nothing_behind(
    http: aiohttp.ClientSession, scan: SecretScan
) -> None:
    silent = await SilentServer().start()
    engine = baseten.TTS(model="qwen3-tts", api_key=KEY, model_endpoint=silent.url("ws"),
                         http_session=http, voice="ada")  # fmt: skip
    try:
        stream = engine.stream(conn_options=RETRY)
        stream.push_text(TEXT)
        await silent.progress.until(lambda: silent.accepted == 1)
        await asyncio.wait_for(stream.aclose(), 1.0)
        await asyncio.wait_for(engine.aclose(), 1.0)
        left = [t for t in asyncio.all_tasks() if t.get_name().startswith("baseten.") and
                not t.done()]  # fmt: skip
        assert left == []
    finally:
        await silent.close()


# -- TLS ---------------------------------------------------------------------------------------


async def test_tls_is_verified_and_a_private_ca_is_trusted_only_through_http_session(
    http: aiohttp.ClientSession, scan: SecretScan
) -> None:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    tls = await FakeQwen3TTSServer().start(context)
    try:
        e = await expect(scan, APIConnectionError, synthesis(tls.url, http, scan, RETRY))
        assert "certificate" in str(e) and not e.retryable
        assert tls.connections == []
        trusting = ssl.create_default_context()
        ca.configure_trust(trusting)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusting)) as trusted:
            assert_spoken(await synthesis(tls.url, trusted, scan, RETRY), TEXT.split())
            assert (await voices(tls.url, trusted, RETRY))["voices"] == []  # type: ignore[index]
    finally:
        await tls.close()


# -- hostile servers ---------------------------------------------------------------------------

FUZZ = APIConnectOptions(max_retry=0, timeout=0.5)
# JSON values, flat: what matters is a value of the wrong kind where a field is read.
JSON: st.SearchStrategy[Any] = (
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=6) | st.just([])
)
EVENTS = st.sampled_from(["audio.start", "audio.done", "session.done", "error", "other"])


@st.composite
def server_frames(draw: st.DrawFn) -> str | bytes:
    """A frame a broken or hostile server might send: audio, junk, or an event with any
    fields, an alignment of any shape included."""
    kind = draw(st.sampled_from(["audio", "junk", "event"]))
    if kind == "audio":
        return draw(st.binary(max_size=4000))
    if kind == "junk":
        return draw(st.text(max_size=40))
    event: dict[str, Any] = {"type": draw(EVENTS)}
    event.update(draw(st.dictionaries(st.sampled_from(["sample_rate", "sentence_index", "error",
                                                       "message"]), JSON, max_size=2)))  # fmt: skip
    if draw(st.booleans()):
        event["timestamp_info"] = {"word_alignment": draw(st.dictionaries(
            st.sampled_from(["words", "word_start_times_seconds", "word_end_times_seconds"]),
            st.lists(JSON, max_size=4)))}  # fmt: skip
    return json.dumps(event)


@settings(max_examples=50, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(server_frames(), max_size=6))
def test_a_synthesis_survives_any_server_frames(
    scan: SecretScan, frames: list[str | bytes]
) -> None:
    async def main() -> bytes | APIError:
        server = await FakeQwen3TTSServer().start()
        # Ended by a session.done, so that a run the frames leave open is quick.
        server.behaviour.frames = [*frames, '{"type": "session.done"}']
        try:
            async with aiohttp.ClientSession() as http:
                return await synthesis(server.url, http, scan, FUZZ)
        except APIError as e:
            scan.see("raised", e)
            return e
        finally:
            await server.close()

    outcome = asyncio.run(main())
    if not isinstance(outcome, APIError):
        # The synthesis is what came before the first session.done; later audio is nobody's.
        ends = [i for i, f in enumerate(frames) if isinstance(f, str) and _is_done(f)]
        spoken = frames[: ends[0]] if ends else frames
        sent = b"".join(f for f in spoken if isinstance(f, bytes))
        assert outcome[: len(sent) // 2 * 2] == sent[: len(sent) // 2 * 2]


def _is_done(frame: str) -> bool:
    try:
        return bool(json.loads(frame).get("type") == "session.done")
    except (ValueError, AttributeError):
        return False


ALIGNMENT_VALUES = st.lists(JSON, max_size=5)


@settings(max_examples=100)
@given(
    st.dictionaries(
        st.sampled_from(["words", "word_start_times_seconds", "word_end_times_seconds"]),
        ALIGNMENT_VALUES | JSON,
    ),
    st.floats(min_value=0, max_value=100),
)
def test_word_timings_give_sane_times_for_any_alignment(alignment: object, offset: float) -> None:
    words, _ = word_timings({"timestamp_info": {"word_alignment": alignment}}, offset)
    for word in words:
        start, end = word.start_time, word.end_time
        assert isinstance(start, float | int) and isinstance(end, float | int)
        assert math.isfinite(end) and offset <= start <= end
        assert str(word).strip() and str(word).endswith(" ")
