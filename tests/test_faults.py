# SPDX-License-Identifier: Apache-2.0

"""Faults on every client path: the STT stream, the TTS WebSocket stream and TTS predict.

Each test gives the client a broken network or a hostile server and asserts a typed outcome
(the exact LiveKit error, or survival with the right result) within a bound: nothing hangs,
nothing leaks a task, nothing logs an unretrieved exception (conftest's autouse fixture).
For the whole module, `scan` listens to every log record at DEBUG and to everything the tests
see, and fails the module if the API key shows up anywhere.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import math
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import aiohttp
import pytest
import trustme
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from livekit.agents import (
    APIConnectionError,
    APIConnectOptions,
    APIError,
    APIStatusError,
    APITimeoutError,
    stt,
    tts,
)
from livekit.plugins import baseten
from livekit.plugins.baseten import _native
from livekit.plugins.baseten._frame_writer import FrameWriter
from livekit.plugins.baseten.models import STTModels
from livekit.plugins.baseten.stt import MAX_BUFFERED_AUDIO_S

from .fake_orpheus import FakeOrpheusServer
from .fake_qwen3_asr import FakeQwen3AsrServer
from .fake_tcp import DribbleProxy, SilentServer
from .fake_whisper import FakeWhisperServer, Session, error_message, transcription
from .secret_scan import SecretScan, exception_chain
from .test_stt import push, tone
from .test_stt_send_path import small_send_buffer_socket
from .test_tts import assert_spoken

KEY = "bt-FaultSuite-7Qx9Zr2Lk5Wm8Tn4"
# The most any test here may take; healthy runs take a small fraction of it.
BOUND = 10.0
FRAME_BYTES = 1024  # s16le at 16 kHz, 512 samples

Path = Literal["stt", "stt_qwen3", "tts_ws", "tts_predict"]
PATHS: list[Path] = ["stt", "stt_qwen3", "tts_ws", "tts_predict"]
STT_PATHS = ("stt", "stt_qwen3")
TEXT = "Hi there."
# The audio every STT run pushes: 10 frames once padded, which the fake transcribes as "f0".
UTTERANCE = tone(16000, 0.3)
RETRY = APIConnectOptions(max_retry=2, retry_interval=0.05, timeout=5.0)
QUICK = APIConnectOptions(max_retry=0, timeout=0.3)

E = TypeVar("E", bound=BaseException)
Engine = baseten.STT | baseten.TTS
Stream = stt.SpeechStream | tts.SynthesizeStream | tts.ChunkedStream


# -- the secret scan, over the whole module ---------------------------------------------------


# The scan's verdict covers the whole module: its tests run in one worker.
pytestmark = pytest.mark.xdist_group("secret-scan-faults")


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


# -- servers and clients ----------------------------------------------------------------------


@dataclass
class Servers:
    whisper: FakeWhisperServer
    qwen3: FakeQwen3AsrServer
    orpheus: FakeOrpheusServer

    @classmethod
    async def start(cls, ssl_context: ssl.SSLContext | None = None) -> Servers:
        return cls(
            await FakeWhisperServer().start(ssl_context),
            await FakeQwen3AsrServer().start(ssl_context),
            await FakeOrpheusServer().start(ssl_context),
        )

    async def close(self) -> None:
        await self.whisper.close()
        await self.qwen3.close()
        await self.orpheus.close()

    def url(self, path: Path) -> str:
        if path == "stt":
            return self.whisper.url
        if path == "stt_qwen3":
            return self.qwen3.url
        return self.orpheus.ws_url if path == "tts_ws" else self.orpheus.predict_url

    def attempts(self, path: Path) -> list[float]:
        """When each connection attempt reached the server."""
        if path == "stt_qwen3":
            return self.qwen3.handshake_times
        return self.whisper.handshake_times if path == "stt" else self.orpheus.attempt_times

    def refuse(self, path: Path, status: int, first: int = 0) -> None:
        """Answers the handshake (or the predict) with `status`; only the first `first`
        attempts when `first` is given."""
        if path == "stt":
            self.whisper.behaviour.reject_status = status
            self.whisper.behaviour.reject_handshakes = first
        elif path == "stt_qwen3":
            self.qwen3.behaviour.reject_status = status
            self.qwen3.behaviour.reject_handshakes = first
        else:
            self.orpheus.behaviour.reject_status = status
            self.orpheus.behaviour.faulty_attempts = first


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    started = await Servers.start()
    yield started
    await started.close()


def plaintext(path: Path) -> str:
    """The unencrypted scheme of `path`, for servers on this machine."""
    return "http" if path == "tts_predict" else "ws"


EngineT = TypeVar("EngineT", baseten.STT, baseten.TTS)


def watched(engine: EngineT, scan: SecretScan) -> EngineT:
    """`engine`, its events and metrics shown to the scan."""
    engine.on("metrics_collected", lambda m: scan.see("metrics", m))
    engine.on("error", lambda e: scan.see("error event", e))
    scan.see("plugin", engine)
    return engine


def stt_engine(
    url: str, http: aiohttp.ClientSession, scan: SecretScan, path: Path = "stt"
) -> baseten.STT:
    model: STTModels = "qwen3-asr" if path == "stt_qwen3" else "whisper"
    engine = baseten.STT(model=model, api_key=KEY, model_endpoint=url, http_session=http)
    return watched(engine, scan)


def engine_for(path: Path, url: str, http: aiohttp.ClientSession, scan: SecretScan) -> Engine:
    if path in STT_PATHS:
        return stt_engine(url, http, scan, path)
    return watched(baseten.TTS(api_key=KEY, model_endpoint=url, http_session=http), scan)


def start(engine: Engine, path: Path, options: APIConnectOptions) -> Stream:
    """A stream of `path` with the whole input given (ended for the streams)."""
    if isinstance(engine, baseten.STT):
        speech = engine.stream(conn_options=options)
        push(speech, UTTERANCE, 16000)
        speech.end_input()
        return speech
    if path == "tts_predict":
        return engine.synthesize(TEXT, conn_options=options)
    synthesis = engine.stream(conn_options=options)
    synthesis.push_text(TEXT)
    synthesis.end_input()
    return synthesis


async def drain(stream: Stream, scan: SecretScan) -> list[Any]:
    """Every event, shown to the scan, until the stream ends; then closes it."""
    events: list[Any] = []
    try:
        async with asyncio.timeout(BOUND):
            async for ev in stream:
                scan.see("event", ev)
                events.append(ev)
    finally:
        await stream.aclose()
        scan.see("stream", stream)
    return events


async def run(
    path: Path,
    url: str,
    http: aiohttp.ClientSession,
    scan: SecretScan,
    options: APIConnectOptions = RETRY,
) -> list[Any]:
    return await drain(start(engine_for(path, url, http, scan), path, options), scan)


async def expect(scan: SecretScan, kind: type[E], outcome: Awaitable[object]) -> E:
    """The exception `outcome` raises, which must be exactly of type `kind` (a timeout is not
    a connection error here), within the bound; its whole chain goes to the scan."""
    try:
        async with asyncio.timeout(BOUND):
            await outcome
    except BaseException as e:
        scan.see("raised", e)
        assert type(e) is kind, f"expected {kind.__name__}, got {e!r}"
        return e
    raise AssertionError(f"expected {kind.__name__}, but it succeeded")


def assert_complete(path: Path, events: list[Any]) -> None:
    """The run delivered the whole result: the utterance's transcript, or the text's audio."""
    if path in STT_PATHS:
        finals = [
            e.alternatives[0].text for e in events if e.type == stt.SpeechEventType.FINAL_TRANSCRIPT
        ]
        assert finals == (["c0"] if path == "stt_qwen3" else ["f0"])
    else:
        assert_spoken(b"".join(e.frame.data.tobytes() for e in events), TEXT.split())


def assert_backoff(times: list[float], options: APIConnectOptions) -> None:
    """Each retry waited at least LiveKit's interval for it (lower bounds only: waiting longer
    is allowed, so this cannot flake on a slow machine)."""
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == options.max_retry
    for attempt, gap in enumerate(gaps):
        assert gap >= options._interval_for_retry(attempt) - 1e-3, (attempt, gaps)


def plugin_warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    """The plugin's warnings (and worse) that mention `text`."""
    return [
        r
        for r in caplog.records
        if r.name.startswith("livekit.plugins.baseten")
        and r.levelno >= logging.WARNING
        and text in r.getMessage()
    ]


def plugin_tasks() -> list[asyncio.Task[Any]]:
    """Unfinished tasks of the plugin and of LiveKit's stream machinery."""
    found = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        where = code.co_filename if code is not None else ""
        if task.get_name().startswith("baseten.") or (
            "/livekit/" in where and "/livekit/plugins/baseten/local/" not in where
        ):
            found.append(task)
    return [t for t in found if not t.done()]


# -- handshakes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("status", [401, 403, 404])
async def test_a_4xx_handshake_is_a_status_error_and_never_retried(
    servers: Servers, http: aiohttp.ClientSession, scan: SecretScan, path: Path, status: int
) -> None:
    servers.refuse(path, status)
    e = await expect(scan, APIStatusError, run(path, servers.url(path), http, scan))
    assert e.status_code == status and not e.retryable
    assert len(servers.attempts(path)) == 1


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("status", [429, 500, 503])
async def test_429_and_5xx_are_retried_after_the_retry_interval(
    servers: Servers, http: aiohttp.ClientSession, scan: SecretScan, path: Path, status: int
) -> None:
    servers.refuse(path, status, first=RETRY.max_retry)  # the last attempt gets through
    assert_complete(path, await run(path, servers.url(path), http, scan))
    assert_backoff(servers.attempts(path), RETRY)


@pytest.mark.parametrize("path", PATHS)
async def test_a_503_on_every_attempt_fails_after_max_retry_with_the_status(
    servers: Servers, http: aiohttp.ClientSession, scan: SecretScan, path: Path
) -> None:
    servers.refuse(path, 503)
    # The STT gives up with a connection error caused by the last status (as LiveKit's
    # STT base class does); the TTS base classes raise the last error itself.
    kind = APIConnectionError if path in STT_PATHS else APIStatusError
    e = await expect(scan, kind, run(path, servers.url(path), http, scan))
    status = e if isinstance(e, APIStatusError) else e.__cause__
    assert isinstance(status, APIStatusError) and status.status_code == 503
    assert_backoff(servers.attempts(path), RETRY)


# -- the network ---------------------------------------------------------------------------------


class FailingResolver(AbstractResolver):
    """DNS that knows no host: deterministic, and no network needed."""

    def __init__(self) -> None:
        self.lookups = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups += 1
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def close(self) -> None:
        pass


REMOTE_URLS: dict[Path, str] = {
    "stt": "wss://model-nowhere.api.baseten.co/environments/production/websocket",
    "stt_qwen3": "wss://model-nowhere.api.baseten.co/environments/production/websocket",
    "tts_ws": "wss://model-nowhere.api.baseten.co/environments/production/websocket",
    "tts_predict": "https://model-nowhere.api.baseten.co/environments/production/predict",
}


@pytest.mark.parametrize("path", PATHS)
async def test_a_dns_failure_is_a_retryable_connection_error(scan: SecretScan, path: Path) -> None:
    resolver = FailingResolver()
    options = APIConnectOptions(max_retry=1, retry_interval=0.01, timeout=5.0)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=resolver)) as http:
        e = await expect(
            scan, APIConnectionError, run(path, REMOTE_URLS[path], http, scan, options)
        )
    assert resolver.lookups == 2, "retried once"
    # Retries spent, the error says what failed (the STT wraps it, as LiveKit's STT does).
    assert any("nowhere" in str(x) for x in exception_chain(e))


@pytest.mark.parametrize("path", PATHS)
async def test_a_refused_connection_is_a_connection_error(
    http: aiohttp.ClientSession, scan: SecretScan, path: Path
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"{plaintext(path)}://127.0.0.1:{port}/x"
    e = await expect(scan, APIConnectionError, run(path, url, http, scan, QUICK))
    assert e.retryable


@pytest.mark.parametrize("path", PATHS)
async def test_a_server_that_accepts_and_never_answers_times_out(
    http: aiohttp.ClientSession, scan: SecretScan, path: Path
) -> None:
    silent = await SilentServer().start()
    try:
        url = silent.url(plaintext(path))
        e = await expect(scan, APITimeoutError, run(path, url, http, scan, QUICK))
        assert e.retryable
        assert silent.accepted == 1
    finally:
        await silent.close()


@pytest.mark.parametrize("path", PATHS)
async def test_a_server_answering_one_byte_at_a_time_is_understood(
    servers: Servers, http: aiohttp.ClientSession, scan: SecretScan, path: Path
) -> None:
    upstream = servers.url(path)
    proxy = await DribbleProxy(_port_of(upstream), delay=0.0).start()
    try:
        assert_complete(path, await run(path, proxy.url(upstream), http, scan))
    finally:
        await proxy.close()


@pytest.mark.parametrize("path", PATHS)
async def test_a_server_answering_too_slowly_times_out_though_bytes_keep_coming(
    servers: Servers, http: aiohttp.ClientSession, scan: SecretScan, path: Path
) -> None:
    # A byte every 10 ms keeps any per-read timer happy, but the first 512 bytes alone take
    # over 5 s: far past every path's deadline (1.2 s at most, predict's for this text).
    upstream = servers.url(path)
    proxy = await DribbleProxy(_port_of(upstream), delay=0.01).start()
    try:
        await expect(scan, APITimeoutError, run(path, proxy.url(upstream), http, scan, QUICK))
    finally:
        await proxy.close()


def _port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


# -- the server goes away mid-utterance ----------------------------------------------------------


def padded(pcm: bytes) -> bytes:
    """`pcm` as it goes on the wire: whole frames, the last one zero-padded."""
    return pcm.ljust(math.ceil(len(pcm) / FRAME_BYTES) * FRAME_BYTES, b"\0")


def assert_audio_accounted(sessions: list[Session], pcm: bytes) -> None:
    """Exact byte accounting across connections: each connection received a contiguous piece
    of the input, starting where the audio confirmed by the earlier ones (covered by a final,
    or by `finished`) ended; so nothing was lost, reordered or transcribed twice, and together
    the confirmed audio is the input plus its zero padding."""
    wire, at = padded(pcm), 0
    for number, session in enumerate(sessions):
        received = bytes(session.audio)
        assert received == wire[at : at + len(received)], f"connection {number} out of place"
        at += session.confirmed_frames * FRAME_BYTES
    assert at == len(wire), f"{at} of {len(wire)} bytes confirmed"


@pytest.mark.parametrize("how", ["close", "reset"])
async def test_stt_repeated_closes_mid_utterance_lose_no_audio_exact_bytes(
    servers: Servers, http: aiohttp.ClientSession, scan: SecretScan, how: str
) -> None:
    # Each connection transcribes 10 frames, then dies after reading 20 (a clean WebSocket
    # close, or a TCP reset); the client wrote more, which the dead socket swallowed.
    b = servers.whisper.behaviour
    b.final_every_frames = 10
    if how == "close":
        b.close_after_frames = 20
    else:
        b.reset_after_frames = 20
    pcm = tone(16000, 2.0)
    engine = stt_engine(servers.whisper.url, http, scan)
    # Five connections die in a row: exactly the retries allowed (a budget of 4 would fail).
    options = APIConnectOptions(max_retry=5, retry_interval=0.01, timeout=5.0)
    speech = engine.stream(conn_options=options)
    push(speech, pcm, 16000)
    speech.end_input()
    events = await drain(speech, scan)
    sessions = servers.whisper.sessions
    assert len(sessions) == 6  # 63 frames: 10 confirmed per connection, the last 13 finish
    assert all(s.closed_by == ("server" if how == "close" else "reset") for s in sessions[:-1])
    assert_audio_accounted(sessions, pcm)
    finals = [e.alternatives[0] for e in events if e.type == stt.SpeechEventType.FINAL_TRANSCRIPT]
    # One timeline across connections: each final starts where its audio was in the input.
    assert [f.start_time for f in finals] == pytest.approx([i * 0.32 for i in range(7)])


async def test_stt_audio_pushed_while_reconnecting_goes_to_the_next_connection(
    servers: Servers, http: aiohttp.ClientSession, scan: SecretScan
) -> None:
    b = servers.whisper.behaviour
    b.final_every_frames = 10
    b.reset_after_frames = 20
    b.faulty_sessions = 1
    reconnect = asyncio.Event()  # holds the second handshake: the connection is down

    async def gate(number: int) -> None:
        if number > 1:
            await reconnect.wait()

    b.handshake_gate = gate
    engine = stt_engine(servers.whisper.url, http, scan)
    speech = engine.stream(conn_options=APIConnectOptions(max_retry=1, timeout=5.0))
    before, during = tone(16000, 1.0), tone(16000, 1.0, freq=300.0)
    push(speech, before, 16000)
    await servers.whisper.progress.until(lambda: servers.whisper.handshakes == 2)
    push(speech, during, 16000)
    reconnect.set()
    speech.end_input()
    await drain(speech, scan)
    assert len(servers.whisper.sessions) == 2
    assert_audio_accounted(servers.whisper.sessions, before + during)


async def test_stt_buffer_past_its_bound_drops_the_oldest_once_and_keeps_times_right(
    servers: Servers,
    http: aiohttp.ClientSession,
    scan: SecretScan,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Pushed before any connection exists: 40 s of audio against a 30 s buffer.
    bound = round(MAX_BUFFERED_AUDIO_S / 0.032)
    pcm = tone(16000, 40.0)
    total = len(pcm) // FRAME_BYTES
    engine = stt_engine(servers.whisper.url, http, scan)
    speech = engine.stream(conn_options=RETRY)
    push(speech, pcm, 16000)
    speech.end_input()
    events = await drain(speech, scan)
    (session,) = servers.whisper.sessions
    dropped = total - bound
    assert bytes(session.audio) == pcm[dropped * FRAME_BYTES :]  # the newest 30 s, whole
    assert len(plugin_warnings(caplog, "dropping the oldest")) == 1
    (final,) = [e.alternatives[0] for e in events if e.type == stt.SpeechEventType.FINAL_TRANSCRIPT]
    # Times stay on the input's timeline: the transcript starts where the kept audio did.
    assert (final.start_time, final.end_time) == pytest.approx((dropped * 0.032, 40.0))
    assert final.words is not None and final.words[0].start_time == pytest.approx(dropped * 0.032)


@pytest.mark.parametrize("path", ["tts_ws", "tts_predict"])
@pytest.mark.parametrize("how", ["close", "reset"])
async def test_tts_cut_before_any_audio_is_retried_and_spoken_once(
    servers: Servers, http: aiohttp.ClientSession, scan: SecretScan, path: Path, how: str
) -> None:
    b = servers.orpheus.behaviour
    b.cut_after_bytes, b.cut_with, b.faulty_attempts = 0, how, RETRY.max_retry
    assert_complete(path, await run(path, servers.url(path), http, scan))
    assert_backoff(servers.attempts(path), RETRY)


@pytest.mark.parametrize("path", ["tts_ws", "tts_predict"])
@pytest.mark.parametrize("how", ["close", "reset"])
async def test_tts_cut_mid_audio_is_a_connection_error_never_repeated(
    servers: Servers, http: aiohttp.ClientSession, scan: SecretScan, path: Path, how: str
) -> None:
    b = servers.orpheus.behaviour
    b.cut_after_bytes, b.cut_with = 8192, how
    e = await expect(scan, APIConnectionError, run(path, servers.url(path), http, scan))
    assert not e.retryable
    assert len(servers.attempts(path)) == 1  # audio had played: a retry would say it twice


async def test_stt_close_while_the_sender_waits_for_the_socket_keeps_the_audio_in_order(
    servers: Servers, scan: SecretScan, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server reads 20 frames, then stops reading: the client's socket fills and its sender
    # waits for it to drain. Only then does the server close. What the dead connection
    # swallowed, and what it never took, go to the next one, in order.
    b = servers.whisper.behaviour
    b.final_every_frames = 10
    b.close_after_frames = 20
    b.faulty_sessions = 1
    b.hold_before_close = asyncio.Event()
    writable = FrameWriter.writable

    async def waits_for_the_socket(self: FrameWriter) -> None:
        assert b.hold_before_close is not None
        b.hold_before_close.set()
        await writable(self)

    monkeypatch.setattr(FrameWriter, "writable", waits_for_the_socket)
    pcm = tone(16000, 20.0)  # 640 KB: more than the socket buffers hold
    connector = aiohttp.TCPConnector(socket_factory=small_send_buffer_socket)
    async with aiohttp.ClientSession(connector=connector) as http:
        engine = stt_engine(servers.whisper.url, http, scan)
        speech = engine.stream(conn_options=APIConnectOptions(max_retry=1, timeout=5.0))
        push(speech, pcm, 16000)
        speech.end_input()
        await drain(speech, scan)
    assert b.hold_before_close.is_set(), "the socket never pushed back"
    assert len(servers.whisper.sessions) == 2
    assert_audio_accounted(servers.whisper.sessions, pcm)


# -- hostile messages -----------------------------------------------------------------------------


async def test_stt_protocol_noise_is_survived_and_each_kind_logged_once(
    servers: Servers,
    http: aiohttp.ClientSession,
    scan: SecretScan,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def message(text: str, start: float, end: float, prob: float = 0.9) -> str:
        # Python's json writes NaN, which is not JSON: the server's own encoder would too.
        return json.dumps(
            transcription([(text, start, end)], final=False, start=start, end=end, prob=prob)
        )

    recoverable = json.dumps(error_message("TRANSCRIPTION_ERROR", "a partial failed", True))
    servers.whisper.behaviour.inject = [
        "{not json",
        '{"type": "transcription", "segments": [',
        message(" nan", math.nan, 0.1),
        b"\x00\x01",
        b"",
        message(" negative", -5.0, -1.0),
        message(" absurd", 1e300, 1e301, prob=7.0),
        '{"type": "mystery"}',
        recoverable,
        recoverable,
    ]
    engine = stt_engine(servers.whisper.url, http, scan)
    speech = engine.stream(conn_options=APIConnectOptions(max_retry=0, timeout=5.0))
    push(speech, tone(16000, 0.64), 16000)
    speech.end_input()
    events = await drain(speech, scan)
    transcripts = (stt.SpeechEventType.INTERIM_TRANSCRIPT, stt.SpeechEventType.FINAL_TRANSCRIPT)
    said = {e.alternatives[0].text: e for e in events if e.type in transcripts}
    assert said["f0 f10"].type == stt.SpeechEventType.FINAL_TRANSCRIPT  # the real transcript
    assert "nan" not in said
    negative = said["negative"].alternatives[0]
    assert (negative.start_time, negative.end_time) == (0.0, 0.0)  # negative times become 0
    # Times past all the audio sent are clamped to it, a probability of 7 to 1.
    absurd, sent = said["absurd"].alternatives[0], 0.64 + 1e-9
    assert 0.0 <= absurd.start_time <= absurd.end_time <= sent
    assert absurd.words is not None and all(w.end_time <= sent for w in absurd.words)
    assert absurd.confidence == 1.0
    assert [w.confidence for w in absurd.words] == [1.0]
    for kind in ("malformed", "binary", "recoverable", "past the audio"):
        assert len(plugin_warnings(caplog, kind)) == 1, kind


@pytest.mark.parametrize("path", ["stt", "stt_qwen3", "tts_ws"])
async def test_a_10_mb_message_is_a_connection_error_naming_the_size_limit(
    servers: Servers, http: aiohttp.ClientSession, scan: SecretScan, path: Path
) -> None:
    huge = 10 << 20
    servers.whisper.behaviour.inject = ["x" * huge]
    servers.qwen3.behaviour.inject = ["x" * huge]
    servers.orpheus.behaviour.frames = [b"\0" * huge]
    options = APIConnectOptions(max_retry=0, timeout=5.0)
    e = await expect(scan, APIConnectionError, run(path, servers.url(path), http, scan, options))
    assert "exceeds limit" in str(e)


async def test_predict_an_endless_error_body_is_read_only_in_part(
    servers: Servers, http: aiohttp.ClientSession, scan: SecretScan
) -> None:
    servers.orpheus.behaviour.reject_status = 500
    servers.orpheus.behaviour.endless_error_body = True
    options = APIConnectOptions(max_retry=0, timeout=5.0)
    e = await expect(
        scan, APIStatusError, run("tts_predict", servers.url("tts_predict"), http, scan, options)
    )
    assert e.status_code == 500
    assert isinstance(e.body, str) and 0 < len(e.body) <= 2000


# -- user-side misuse -----------------------------------------------------------------------------


async def test_stt_input_after_end_input_or_aclose_is_a_clear_runtime_error(
    servers: Servers, http: aiohttp.ClientSession, scan: SecretScan
) -> None:
    engine = stt_engine(servers.whisper.url, http, scan)
    speech = engine.stream(conn_options=RETRY)
    push(speech, UTTERANCE, 16000)
    with pytest.raises(ValueError, match="channel count of the input frames must be consistent"):
        push(speech, tone(16000, 0.04, channels=2), 16000, channels=2)
    speech.end_input()

    def push_more() -> None:
        push(speech, UTTERANCE, 16000)

    for misuse in (push_more, speech.flush, speech.end_input):
        with pytest.raises(RuntimeError, match="input ended") as info:
            misuse()
        scan.see("raised", info.value)
    assert_complete("stt", await drain(speech, scan))  # the stream itself is unharmed
    with pytest.raises(RuntimeError, match=r"input ended|is closed"):
        push_more()


async def test_tts_text_pushed_after_end_input_is_dropped_not_spoken(
    servers: Servers, http: aiohttp.ClientSession, scan: SecretScan
) -> None:
    # LiveKit's base class ignores text after end_input (and after aclose) without raising.
    engine = engine_for("tts_ws", servers.orpheus.ws_url, http, scan)
    synthesis = start(engine, "tts_ws", RETRY)
    assert isinstance(synthesis, tts.SynthesizeStream)
    synthesis.push_text(" and more words")
    assert_complete("tts_ws", await drain(synthesis, scan))
    assert " ".join(servers.orpheus.sessions[0].texts[:-1]).split() == TEXT.split()
    synthesis.push_text("after close")  # ignored too: no error, no task


@pytest.mark.parametrize("path", PATHS)
async def test_aclose_during_connect_returns_at_once_and_leaves_nothing_behind(
    http: aiohttp.ClientSession, scan: SecretScan, path: Path
) -> None:
    silent = await SilentServer().start()
    try:
        engine = engine_for(path, silent.url(plaintext(path)), http, scan)
        stream = start(engine, path, APIConnectOptions(max_retry=3, timeout=BOUND))
        await silent.progress.until(lambda: silent.accepted == 1)  # connecting, unanswered
        assert plugin_tasks(), "the task check must see a live stream's tasks"
        async with asyncio.timeout(1.0):  # not the connect timeout
            await stream.aclose()
        scan.see("stream", stream)
        assert plugin_tasks() == []
        await silent.progress.until(lambda: silent.closed_by_client == 1)  # no leaked socket
        assert silent.accepted == 1
    finally:
        await silent.close()


@pytest.mark.parametrize("path", PATHS)
async def test_cancelling_the_consuming_task_closes_the_stream_cleanly(
    servers: Servers, http: aiohttp.ClientSession, scan: SecretScan, path: Path
) -> None:
    # Each server answers the start and then holds the rest: the consumer is mid-iteration.
    servers.orpheus.behaviour.gate = asyncio.Event()  # predict: the body stops after a chunk
    servers.orpheus.behaviour.chunk_bytes = 2400
    servers.orpheus.behaviour.close_after_end = False  # WebSocket: speaks, never closes
    servers.whisper.behaviour.partial_every_frames = 5  # STT: partials, never a final
    servers.qwen3.behaviour.partial_every_chunks = 2
    servers.qwen3.behaviour.answer_commits = False
    engine = engine_for(path, servers.url(path), http, scan)
    stream = start(engine, path, RETRY)
    first = asyncio.Event()

    async def consume() -> None:
        async with stream:  # what a well-written consumer does; its exit calls aclose()
            async for ev in stream:
                scan.see("event", ev)
                first.set()

    consumer = asyncio.create_task(consume())
    async with asyncio.timeout(BOUND):
        await first.wait()
    assert plugin_tasks(), "the task check must see a live stream's tasks"
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert plugin_tasks() == []
    if path == "stt":
        whisper = servers.whisper
        await whisper.progress.until(lambda: whisper.sessions[0].closed_by == "client")
    if path == "stt_qwen3":
        qwen3 = servers.qwen3
        await qwen3.progress.until(lambda: qwen3.sessions[0].closed_by == "client")


# -- hostile input, fuzzed ------------------------------------------------------------------------

# Text frames carry UTF-8: lone surrogates cannot be sent at all, so they are left out.
CHARS = st.characters(codec="utf-8")
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(CHARS, max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(CHARS, max_size=8), inner),
    max_leaves=12,
)
# Numbers JSON can write but no f64 or i64 holds, and the extremes that fit.
HUGE = st.sampled_from([1e308, -1e308, 2.0**1023 * 1.99, 10**400, 2**64, -(2**63) - 1, math.inf])
REAL_MESSAGES = [
    json.dumps(m)
    for m in (
        transcription([(" hello", 0.0, 0.4), (" world", 0.4, 0.9)], final=False, start=0, end=0.9),
        transcription([(" hello", 0.0, 0.4)], final=True, num=3, start=0, end=0.4),
        {"type": "end_audio", "trace_id": None, "body": {"status": "acknowledged"}},
        {"type": "end_audio", "trace_id": None, "body": {"status": "finished"}},
        {"type": "health_check", "trace_id": None, "body": {"healthy": True}},
        error_message("TRANSCRIPTION_ERROR", "a partial failed", True),
        error_message("STREAM_ERROR", "the stream died", False),
    )
]


def _replace_somewhere(node: Any, draw: st.DrawFn, value: object) -> None:
    """Replaces one value, at a random depth of `node`, with `value`."""
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            return
        key = draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, (dict, list)) and child and draw(st.booleans()):
            node = child
        else:
            node[key] = value
            return


@st.composite
def mutated_messages(draw: st.DrawFn) -> str:
    """A real server message, broken the ways a server or a proxy might break it."""
    text = draw(st.sampled_from(REAL_MESSAGES))
    how = draw(st.sampled_from(["truncate", "flip", "retype", "huge", "deep"]))
    if how == "truncate":
        return text[: draw(st.integers(0, len(text) - 1))]
    if how == "flip":
        at = draw(st.integers(0, len(text) - 1))
        return text[:at] + draw(CHARS) + text[at + 1 :]
    if how == "deep":  # far past any parser's recursion limit, inside an ignored field
        depth = draw(st.integers(100, 20_000))
        return text[:-1] + ', "extra": ' + "[" * depth + "]" * depth + "}"
    message = json.loads(text)
    _replace_somewhere(message, draw, draw(JSON_VALUES if how == "retype" else HUGE))
    return json.dumps(message)  # NaN and Infinity as Python writes them, which is not JSON


SERVER_FRAMES = st.one_of(mutated_messages(), st.text(CHARS, max_size=200), st.binary(max_size=300))


@settings(max_examples=300)
@given(st.one_of(mutated_messages(), st.text(CHARS)), st.floats(0.0, 1e6))
def test_parse_message_gives_a_message_or_a_value_error_and_only_sane_times(
    text: str, offset: float
) -> None:
    try:
        msg = _native.parse_message(text, offset)
    except ValueError:
        return
    if isinstance(msg, _native.Transcription):
        spans = [(msg.start, msg.end)] + [(w.start_time, w.end_time) for w in msg.words]
        for start, end in spans:
            assert isinstance(start, float) and isinstance(end, float)
            assert math.isfinite(end) and offset <= start <= end
    else:
        assert isinstance(
            msg,
            (_native.EndAudio, _native.HealthCheck, _native.ServerError, _native.UnknownMessage),
        )


FUZZ = APIConnectOptions(max_retry=0, timeout=2.0)


def under_fire(path: Path, scan: SecretScan, frames: list[str | bytes]) -> list[Any] | APIError:
    """One run of `path` on fresh servers that send `frames` (STT: right after the metadata;
    TTS: instead of the speech): the events, or the typed error. Anything else fails."""

    async def main() -> list[Any] | APIError:
        servers = await Servers.start()
        servers.whisper.behaviour.inject = frames
        servers.qwen3.behaviour.inject = [f for f in frames if isinstance(f, str)]
        servers.orpheus.behaviour.frames = frames
        try:
            async with aiohttp.ClientSession() as http:
                return await run(path, servers.url(path), http, scan, FUZZ)
        except APIError as e:
            scan.see("raised", e)
            return e
        finally:
            await servers.close()

    return asyncio.run(main())


# A run through real sockets costs ~10 ms: these counts keep both tests near a second each.
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(SERVER_FRAMES, max_size=6))
def test_stt_stream_survives_any_server_messages(
    scan: SecretScan, frames: list[str | bytes]
) -> None:
    outcome = under_fire("stt", scan, frames)
    if isinstance(outcome, APIError):
        return
    for ev in outcome:
        for alt in ev.alternatives:
            assert math.isfinite(alt.start_time) and 0.0 <= alt.start_time <= alt.end_time
            assert 0.0 <= alt.confidence <= 1.0


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(mutated_messages(), st.text(CHARS, max_size=200)), max_size=6))
def test_qwen3_stt_stream_survives_any_server_messages(scan: SecretScan, frames: list[str]) -> None:
    outcome = under_fire("stt_qwen3", scan, list(frames))
    if isinstance(outcome, APIError):
        return
    for ev in outcome:
        for alt in ev.alternatives:
            assert math.isfinite(alt.start_time) and 0.0 <= alt.start_time <= alt.end_time
            assert 0.0 <= alt.confidence <= 1.0


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.binary(max_size=5000), st.text(CHARS, max_size=100)), max_size=5))
def test_tts_websocket_survives_any_server_frames(
    scan: SecretScan, frames: list[str | bytes]
) -> None:
    outcome = under_fire("tts_ws", scan, frames)
    if any(isinstance(f, str) for f in frames):
        assert isinstance(outcome, APIStatusError)  # a text frame is the server's error report
    elif not isinstance(outcome, APIError):
        audio = b"".join(ev.frame.data.tobytes() for ev in outcome)
        sent = b"".join(f for f in frames if isinstance(f, bytes))
        assert audio[: len(sent) // 2 * 2] == sent[: len(sent) // 2 * 2]


# -- TLS and plaintext --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_servers(tls_ca: trustme.CA) -> AsyncIterator[Servers]:
    """The fake servers behind a certificate from a CA nobody trusts by default."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1").configure_cert(context)
    started = await Servers.start(context)
    yield started
    await started.close()


@pytest.mark.parametrize("path", PATHS)
async def test_tls_is_verified_and_a_private_ca_is_trusted_only_through_http_session(
    tls_servers: Servers,
    tls_ca: trustme.CA,
    http: aiohttp.ClientSession,
    scan: SecretScan,
    path: Path,
) -> None:
    url = tls_servers.url(path)
    assert url.startswith(("wss://", "https://"))
    e = await expect(scan, APIConnectionError, run(path, url, http, scan))
    assert "certificate" in str(e) and not e.retryable  # it would fail again: not retried
    assert tls_servers.attempts(path) == []  # no request ever reached the server
    # The documented way to trust a private CA: an http_session whose connector trusts it.
    trusting = ssl.create_default_context()
    tls_ca.configure_trust(trusting)
    connector = aiohttp.TCPConnector(ssl=trusting)
    async with aiohttp.ClientSession(connector=connector) as trusted:
        assert_complete(path, await run(path, url, trusted, scan))


@pytest.mark.parametrize(
    ("endpoint", "warns"),
    [
        ("ws://baseten.example/ws", True),
        ("http://baseten.example/predict", True),
        ("ws://10.0.0.7:8080/ws", True),
        ("ws://localhost:1/ws", False),
        ("http://127.0.0.1:1/predict", False),
        ("ws://127.0.0.2:1/ws", False),  # all of 127/8 is this machine
        ("http://[::1]:1/predict", False),
        ("wss://baseten.example/ws", False),
    ],
)
def test_plaintext_to_another_host_warns_once_without_the_key(
    caplog: pytest.LogCaptureFixture, endpoint: str, warns: bool
) -> None:
    engine = baseten.TTS(api_key=KEY, model_endpoint=endpoint)
    warnings = plugin_warnings(caplog, "plaintext")
    assert len(warnings) == warns
    assert KEY not in caplog.text
    if endpoint.startswith("ws://"):
        baseten.STT(api_key=KEY, model_endpoint=endpoint)
        assert len(plugin_warnings(caplog, "plaintext")) == 2 * warns
    scan_text = repr(engine)
    assert KEY not in scan_text


# -- the secret scan itself ---------------------------------------------------------------------

PLANTED = "planted-secret-Hw3Jk8Pq"  # not the module's key: the module's scan must stay clean


def test_the_secret_scan_finds_a_planted_key_wherever_it_hides() -> None:
    quiet = logging.getLogger("tests.quiet")  # exists before the probe: a WARNING-only logger
    quiet.setLevel(logging.WARNING)
    quiet.propagate = False

    def leak(plant: Any) -> list[str]:
        probe = SecretScan(PLANTED)
        probe.install()
        try:
            plant(probe)
        finally:
            probe.uninstall()
        return [f.where for f in probe.findings()]

    header = {"Authorization": f"Api-Key {PLANTED}"}
    basic = base64.b64encode(f"user:{PLANTED}".encode()).decode()
    try:
        try:
            raise aiohttp.ClientError(f"request headers {header}")
        except aiohttp.ClientError:
            raise APIConnectionError("no key here") from None
    except APIConnectionError as e:
        suppressed = e
    assert leak(lambda p: logging.getLogger("some.library").debug("sent %s", header))
    assert leak(lambda p: quiet.debug("sent %s", header))
    assert leak(lambda p: logging.getLogger("x").info("ok", extra={"auth": header}))
    assert leak(lambda p: p.see("raised", suppressed))  # found in the suppressed __context__
    assert leak(lambda p: p.see("object", {"basic": basic}))  # base64, mid-string
    assert leak(lambda p: p.see("object", PLANTED.upper()))
    assert not leak(lambda p: p.see("raised", APIConnectionError("nothing to see")))
    assert not leak(lambda p: logging.getLogger("some.library").debug("sent %s", "nothing"))
