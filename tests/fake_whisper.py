# SPDX-License-Identifier: Apache-2.0

"""A Baseten streaming-Whisper server on 127.0.0.1 that behaves like the real one.

Protocol as Baseten's server speaks it (described in docs/protocols.md): the first text
message is the metadata, validated with unknown keys forbidden at every level (the real server's
pydantic models close the socket with 1011); then binary frames of exactly 1024 bytes (s16le at
16 kHz) or 256 bytes (mu-law at 8 kHz, decoded with torchaudio's continuous curve); text control
messages `end_audio` and `health_check`. The "recogniser" is scripted: it sends partials and
finals every so many frames, with words named after the frames they cover, so tests can check
times and counts exactly. Knobs make it close or reset the connection, hang, reject or hold the
handshake, report errors, or send any messages a test scripts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web
from livekit.plugins.baseten.local._schema import FRAME_BYTES, MetadataError, parse_metadata

from .fake_tcp import Progress, reset, serve

__all__ = [
    "Behaviour",
    "FakeWhisperServer",
    "Progress",
    "Session",
    "error_message",
    "transcription",
]

FRAME_SECONDS = 0.032


def metadata_problem(meta: Any) -> str | None:
    """What the real server's `StreamingWhisperInput(extra="forbid")` would refuse."""
    try:
        parse_metadata(meta)
    except MetadataError as e:
        return str(e)
    return None


def decode_continuous_mulaw(data: bytes) -> np.ndarray:
    """torchaudio's MuLawDecoding(256), as the real server decodes pcm_mulaw, to int16."""
    y = np.frombuffer(data, dtype=np.uint8).astype(np.float32) / 255.0 * 2.0 - 1.0
    x = np.sign(y) * (np.power(256.0, np.abs(y)) - 1.0) / 255.0
    pcm: np.ndarray = np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)
    return pcm


@dataclass
class Behaviour:
    """What the scripted server does; tests change it before or during a stream."""

    partial_every_frames: int = 0  # 0: no partials
    final_every_frames: int = 0  # 0: finals only when end_audio flushes
    language_code: str | None = "en"
    word_timestamps: bool = True
    close_after_final: bool = False  # close the socket right after each final
    close_after_frames: int = 0  # close (code 1011) after this many frames, 0: never
    reject_status: int = 0  # refuse the handshake with this HTTP status
    hang: bool = False  # accept, then never read or answer
    error_after_frames: int = 0  # send an `error` after this many frames
    error_recoverable: bool = False
    error_type: str = "TRANSCRIPTION_ERROR"
    answer_end_audio: bool = True  # reply `finished` to end_audio
    answer_health_check: bool = True
    keep_audio: bool = True  # False: count frames without keeping them (long streams)
    silent_sessions: int = 0  # the first N sessions read everything and answer nothing
    reset_after_frames: int = 0  # drop the connection with a TCP reset after this many frames
    faulty_sessions: int = 0  # close_after_frames and reset_after_frames: first N only (0: all)
    reject_handshakes: int = 0  # with reject_status: refuse only the first N handshakes (0: all)
    # Awaited with each handshake's number before answering it: holds a reconnection.
    handshake_gate: Callable[[int], Awaitable[None]] | None = None
    inject: list[str | bytes] = field(default_factory=list)  # sent right after the metadata
    # With close_after_frames: awaited before that close, reading nothing meanwhile.
    hold_before_close: asyncio.Event | None = None
    # Listen instead of counting frames: utterances are found by their energy (silence is
    # digital zero) and named by their length, from this table of (seconds, text).
    utterances: list[tuple[float, str]] | None = None


@dataclass
class Session:
    """One WebSocket connection, as the server saw it."""

    headers: dict[str, str]
    metadata: dict[str, Any] | None = None
    audio: bytearray = field(default_factory=bytearray)
    frame_sizes: list[int] = field(default_factory=list)
    control: list[dict[str, Any]] = field(default_factory=list)
    closed_by: str = ""
    confirmed_frames: int = 0  # frames covered by the finals sent

    def confirmed_audio(self) -> bytes:
        """The audio a final transcript (or `finished`) covered."""
        return bytes(self.audio[: self.confirmed_frames * FRAME_BYTES[self.encoding]])

    @property
    def encoding(self) -> str:
        meta = self.metadata or {}
        return str(meta.get("streaming_params", {}).get("encoding", "pcm_s16le"))

    def pcm16(self) -> np.ndarray:
        """The audio received, decoded to int16 at the wire rate."""
        if self.encoding == "pcm_mulaw":
            return decode_continuous_mulaw(bytes(self.audio))
        return np.frombuffer(bytes(self.audio), dtype=np.int16)


class FakeWhisperServer:
    def __init__(self) -> None:
        self.behaviour = Behaviour()
        self.sessions: list[Session] = []
        self.handshakes = 0
        self.handshake_times: list[float] = []  # time.monotonic() of each handshake
        self.frames_received = 0
        self.transcripts_sent = 0
        self.progress = Progress()
        self._runner: web.AppRunner | None = None
        self._hangs: list[asyncio.Future[None]] = []
        self.url = ""

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> FakeWhisperServer:
        app = web.Application()
        app.router.add_get("/v1/websocket", self._handle)
        self._runner, port = await serve(app, ssl_context)
        scheme = "wss" if ssl_context else "ws"
        self.url = f"{scheme}://127.0.0.1:{port}/v1/websocket"
        return self

    async def close(self) -> None:
        for hang in self._hangs:
            hang.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.handshakes += 1
        number = self.handshakes
        self.handshake_times.append(time.monotonic())
        self.progress.notify()
        b = self.behaviour
        if b.handshake_gate is not None:
            await b.handshake_gate(number)
        if b.reject_status and (not b.reject_handshakes or number <= b.reject_handshakes):
            return web.Response(status=b.reject_status, text="rejected by the fake server")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        session = Session(headers=dict(request.headers))
        self.sessions.append(session)
        self.progress.notify()
        if b.hang:
            hang = asyncio.get_running_loop().create_future()
            self._hangs.append(hang)
            with contextlib.suppress(asyncio.CancelledError):
                await hang
            return ws
        first = await ws.receive()
        try:
            session.metadata = json.loads(first.data) if first.type == WSMsgType.TEXT else None
        except json.JSONDecodeError:
            session.metadata = None
        self.progress.notify()
        if session.metadata is None or metadata_problem(session.metadata):
            await ws.close(code=1011, message=b"invalid metadata")
            session.closed_by = "server"
            return ws
        for message in b.inject:
            if isinstance(message, str):
                await ws.send_str(message)
            else:
                await ws.send_bytes(message)
        recogniser = _Listener if b.utterances is not None else _Recogniser
        await recogniser(self, ws, session, request.transport).run()
        return ws


class _Recogniser:
    """The scripted transcription of one session."""

    def __init__(
        self,
        server: FakeWhisperServer,
        ws: web.WebSocketResponse,
        session: Session,
        transport: asyncio.Transport | None,
    ) -> None:
        self.server, self.ws, self.session, self.b = server, ws, session, server.behaviour
        self.transport = transport
        self.silent = len(server.sessions) <= self.b.silent_sessions
        self.faulty = not self.b.faulty_sessions or len(server.sessions) <= self.b.faulty_sessions
        self.frames = 0
        self.last_frame = b""
        self.utterance_start = 0  # frame index where the current utterance began
        self.num = 0

    async def run(self) -> None:
        s, b = self.session, self.b
        frame_bytes = FRAME_BYTES[s.encoding]
        async for msg in self.ws:
            if msg.type == WSMsgType.BINARY:
                if b.keep_audio:
                    s.frame_sizes.append(len(msg.data))
                if len(msg.data) != frame_bytes:
                    n = len(msg.data) * 512 // frame_bytes
                    await self.error(
                        "AUDIO_PROCESSING_ERROR",
                        f"Provided number of samples is {n} (Supported values: 512)",
                        False,
                    )
                    await self.ws.close(code=1011)
                    s.closed_by = "server"
                    return
                if b.keep_audio:
                    s.audio += msg.data
                self.last_frame = msg.data
                self.frames += 1
                self.server.frames_received += 1
                self.server.progress.notify()
                if not self.silent and not await self.after_frame():
                    return
            elif msg.type == WSMsgType.TEXT:
                if self.silent:
                    s.control.append(json.loads(msg.data))
                    self.server.progress.notify()
                elif not await self.control(msg.data):
                    return
        s.closed_by = s.closed_by or "client"
        self.server.progress.notify()

    async def after_frame(self) -> bool:
        b, n = self.b, self.frames
        if b.error_after_frames and n == b.error_after_frames:
            await self.error(b.error_type, "scripted failure", b.error_recoverable)
        if self.faulty and b.close_after_frames and n == b.close_after_frames:
            if b.hold_before_close is not None:
                await b.hold_before_close.wait()
            await self.ws.close(code=1011)
            self.session.closed_by = "server"
            return False
        if self.faulty and b.reset_after_frames and n == b.reset_after_frames:
            reset(self.transport)
            self.session.closed_by = "reset"
            self.server.progress.notify()
            return False
        if b.final_every_frames and (n - self.utterance_start) == b.final_every_frames:
            await self.transcript(final=True)
            if b.close_after_final:
                await self.ws.close(code=1000)
                self.session.closed_by = "server"
                return False
        elif b.partial_every_frames and (n - self.utterance_start) % b.partial_every_frames == 0:
            await self.transcript(final=False)
        return True

    async def control(self, text: str) -> bool:
        try:
            message = json.loads(text)
            kind = message["type"]
        except (json.JSONDecodeError, KeyError, TypeError):
            await self.error("WEBSOCKET_ERROR", "Failed to validate text message", True)
            return True
        self.session.control.append(message)
        self.server.progress.notify()
        if kind == "health_check" and self.b.answer_health_check:
            await self.ws.send_json(
                {"type": "health_check", "trace_id": None, "body": {"healthy": True}}
            )
        elif kind == "end_audio":
            await self.ws.send_json(
                {"type": "end_audio", "trace_id": None, "body": {"status": "acknowledged"}}
            )
            if self.frames > self.utterance_start:
                await self.transcript(final=True, flush=True)
            if self.b.answer_end_audio:
                self.session.confirmed_frames = self.frames
                await self.ws.send_json(
                    {"type": "end_audio", "trace_id": None, "body": {"status": "finished"}}
                )
        elif kind != "health_check":
            await self.error("WEBSOCKET_ERROR", "Failed to validate text message", True)
        return True

    async def transcript(self, *, final: bool, flush: bool = False) -> None:
        """Words `f<i>` for each 10-frame stretch, timed by the frames they cover."""
        start_frame, end_frame = self.utterance_start, self.frames
        words = [
            (f" f{i}", i * FRAME_SECONDS, min(i + 10, end_frame) * FRAME_SECONDS)
            for i in range(start_frame, end_frame, 10)
        ]
        message = transcription(
            words,
            final=final,
            num=self.num,
            start=start_frame * FRAME_SECONDS,
            end=end_frame * FRAME_SECONDS,
            language=self.b.language_code,
            word_timestamps=self.b.word_timestamps,
        )
        if flush:
            message["is_end_of_audio_flush"] = True
        await self.ws.send_json(message)
        self.server.transcripts_sent += 1
        self.server.progress.notify()
        if final:
            self.num += 1
            self.utterance_start = self.session.confirmed_frames = end_frame

    async def error(self, error_type: str, text: str, recoverable: bool) -> None:
        await self.ws.send_json(error_message(error_type, text, recoverable))


class _Listener(_Recogniser):
    """Transcribes real utterances exactly: an utterance is a run of frames with sound in them
    (silence is digital zero), ended by `SILENCE_FRAMES` of silence, and its text is the one
    whose length in `Behaviour.utterances` is nearest. Words are spread evenly over it."""

    SILENCE_FRAMES = 10  # 320 ms, about the server VAD's minimum silence
    LOUD = 64  # mean absolute sample value that counts as sound

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.speech_start: int | None = None
        self.last_loud = 0

    async def after_frame(self) -> bool:
        n = self.frames
        if np.abs(np.frombuffer(self.last_frame, dtype=np.int16)).mean() > self.LOUD:
            if self.speech_start is None:
                self.speech_start = n - 1
            self.last_loud = n
        elif self.speech_start is not None and n - self.last_loud >= self.SILENCE_FRAMES:
            await self.transcript(final=True)
        return True

    async def transcript(self, *, final: bool, flush: bool = False) -> None:
        start = self.speech_start
        if start is None:
            if flush:
                self.session.confirmed_frames = self.frames
            return
        end = self.last_loud
        assert self.b.utterances is not None
        seconds = (end - start) * FRAME_SECONDS
        _, text = min(self.b.utterances, key=lambda u: abs(u[0] - seconds))

        names = text.split()
        step = (end - start) * FRAME_SECONDS / len(names)
        words = [
            (f" {w}", (start * FRAME_SECONDS) + i * step, (start * FRAME_SECONDS) + (i + 1) * step)
            for i, w in enumerate(names)
        ]
        message = transcription(
            words,
            final=True,
            num=self.num,
            start=start * FRAME_SECONDS,
            end=end * FRAME_SECONDS,
            language=self.b.language_code,
        )
        if flush:
            message["is_end_of_audio_flush"] = True
        await self.ws.send_json(message)
        self.num += 1
        self.speech_start = None
        self.utterance_start = self.session.confirmed_frames = self.frames
        self.server.transcripts_sent += 1
        self.server.progress.notify()


def transcription(
    words: list[tuple[str, float, float]],
    *,
    final: bool,
    num: int = 0,
    start: float,
    end: float,
    language: str | None = "en",
    word_timestamps: bool = True,
    prob: float = 0.9,
) -> dict[str, Any]:
    """A `transcription` message exactly as the real server shapes it: one segment of `words`
    (text, start, end), times in seconds from the start of the connection."""
    timed = [
        {
            "word": word,
            "start_time": round(w_start, 3),
            "end_time": round(w_end, 3),
            "prob": prob,
            "speaker": None,
        }
        for word, w_start, w_end in words
    ]
    segment = {
        "start_time": round(start, 3),
        "end_time": round(end, 3),
        "text": "".join(word for word, _, _ in words),
        "log_prob": -0.1,
        "word_timestamps": timed if word_timestamps else [],
        "speaker": None,
        "speaker_confidence": None,
        "possible_hallucination": False,
        "beam_results": None,
        "language_code": language,
        "language_prob": None,
    }
    return {
        "type": "transcription",
        "is_final": final,
        "transcription_num": num,
        "segments": [segment],
        "language_code": language,
        "language_prob": None,
        "diarization": [],
        "timing_info": None,
        "enable_chunk_level_language_detection": False,
        "audio_length_sec": round(end - start, 3),
        "next_partial": None,
        "pipeline_latency": None,
    }


def error_message(error_type: str, text: str, recoverable: bool) -> dict[str, Any]:
    """An `error` message as the real server shapes it."""
    return {
        "type": "error",
        "trace_id": None,
        "timestamp": None,
        "body": {
            "error_type": error_type,
            "message": text,
            "stream_id": "fake",
            "recoverable": recoverable,
            "timestamp": 0.0,
        },
    }


# How long after an utterance's audio the listening server sends its final.
ENDPOINTING_S = _Listener.SILENCE_FRAMES * FRAME_SECONDS
