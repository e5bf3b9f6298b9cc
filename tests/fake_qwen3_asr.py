# SPDX-License-Identifier: Apache-2.0

"""A Baseten Qwen3-ASR streaming server on 127.0.0.1, written from the protocol.

The first text message is the handshake (Whisper's three groups without encoding and sample
rate; the fake refuses any other key, with close code 1011, so the client's exact message is
checked); then text messages only: `input_audio_buffer.append` with base64 16 kHz int16
audio, and `input_audio_buffer.commit`, answered by one final marked `is_end_of_audio_flush`
(empty when no audio came since the last final). The "recogniser" is scripted: partials and
VAD finals every so many chunks of 100 ms, words `c<i>` named after the 10-chunk stretch they
cover, so tests can check times and counts exactly. Knobs make it close, go silent, answer
commits late, send errors or junk.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from .fake_tcp import Progress, serve

CHUNK_SECONDS = 0.1
CHUNK_BYTES = 3200
HANDSHAKE_KEYS = {
    "whisper_params": {"audio_language", "show_word_timestamps"},
    "streaming_params": {
        "enable_partial_transcripts",
        "partial_transcript_interval_s",
        "final_transcript_max_duration_s",
    },
    "streaming_vad_config": {"threshold", "min_silence_duration_ms", "speech_pad_ms"},
}


def handshake_problem(meta: Any) -> str | None:
    """What this fake refuses in a handshake: anything but the keys of the protocol."""
    if not isinstance(meta, dict) or set(meta) != set(HANDSHAKE_KEYS):
        return f"handshake groups {sorted(meta) if isinstance(meta, dict) else meta!r}"
    for group, keys in HANDSHAKE_KEYS.items():
        if not isinstance(meta[group], dict) or set(meta[group]) != keys:
            return f"{group}: {meta[group]!r}"
    return None


@dataclass
class Behaviour:
    partial_every_chunks: int = 0  # 0: no partials
    final_every_chunks: int = 0  # 0: finals only when a commit asks
    language: str | None = "English"
    word_timestamps: bool = True
    answer_commits: bool = True  # False: read on, answer no commit
    commit_delay_s: float = 0.0  # answer each commit this long after it came
    close_after_chunks: int = 0  # close (code 1011) after this many chunks, 0: never
    faulty_sessions: int = 0  # close_after_chunks: the first N sessions only (0: all)
    close_after_commit: bool = False  # close (code 1000) right after answering a commit
    error_after_chunks: int = 0  # send `{"type":"error","message":...}` after this many
    reject_status: int = 0  # refuse the handshake with this HTTP status
    reject_handshakes: int = 0  # with reject_status: refuse only the first N handshakes (0: all)
    inject: list[str] = field(default_factory=list)  # sent right after the handshake
    # Listen instead of counting chunks: utterances are found by their energy (silence is
    # digital zero) and named by their length, from this table of (seconds, text).
    utterances: list[tuple[float, str]] | None = None


@dataclass
class Session:
    headers: dict[str, str]
    handshake: dict[str, Any] | None = None
    audio: bytearray = field(default_factory=bytearray)
    chunk_sizes: list[int] = field(default_factory=list)
    commits: int = 0
    answered: int = 0
    other: list[Any] = field(default_factory=list)  # text messages that are neither
    closed_by: str = ""


class FakeQwen3AsrServer:
    def __init__(self) -> None:
        self.behaviour = Behaviour()
        self.sessions: list[Session] = []
        self.handshakes = 0
        self.handshake_times: list[float] = []  # time.monotonic() of each handshake
        self.progress = Progress()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> FakeQwen3AsrServer:
        app = web.Application()
        app.router.add_get("/v1/websocket", self._handle)
        self._runner, port = await serve(app, ssl_context)
        scheme = "wss" if ssl_context else "ws"
        self.url = f"{scheme}://127.0.0.1:{port}/v1/websocket"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.handshakes += 1
        self.handshake_times.append(time.monotonic())
        b = self.behaviour
        if b.reject_status and (not b.reject_handshakes or self.handshakes <= b.reject_handshakes):
            return web.Response(status=b.reject_status, text="rejected by the fake server")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        session = Session(headers=dict(request.headers))
        self.sessions.append(session)
        first = await ws.receive()
        try:
            session.handshake = json.loads(first.data) if first.type == WSMsgType.TEXT else None
        except json.JSONDecodeError:
            session.handshake = None
        self.progress.notify()
        if handshake_problem(session.handshake):
            await ws.close(code=1011, message=b"invalid handshake")
            session.closed_by = "server"
            return ws
        for message in b.inject:
            await ws.send_str(message)
        await _Recogniser(self, ws, session).run()
        return ws


class _Recogniser:
    def __init__(self, server: FakeQwen3AsrServer, ws: web.WebSocketResponse, s: Session):
        self.server, self.ws, self.session, self.b = server, ws, s, server.behaviour
        self.faulty = not self.b.faulty_sessions or len(server.sessions) <= self.b.faulty_sessions
        self.chunks = 0
        self.utterance_start = 0
        self.loud: list[bool] = []  # per chunk: sound, not digital silence
        self.speech_start: int | None = None  # listening: the chunk the speech began at
        self.last_loud = 0
        self.answers: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        s = self.session
        try:
            async for msg in self.ws:
                if msg.type != WSMsgType.TEXT:
                    s.other.append(msg.data)
                    continue
                try:
                    message = json.loads(msg.data)
                    kind = message["type"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    s.other.append(msg.data)
                    continue
                if kind == "input_audio_buffer.append":
                    if not await self.append(message):
                        return
                elif kind == "input_audio_buffer.commit":
                    s.commits += 1
                    self.server.progress.notify()
                    if self.b.answer_commits:
                        answer = self.answer_commit(self.chunks)
                        self.answers.append(asyncio.create_task(answer))
                else:
                    s.other.append(message)
            s.closed_by = s.closed_by or "client"
        finally:
            for task in self.answers:
                task.cancel()
            self.server.progress.notify()

    async def append(self, message: dict[str, Any]) -> bool:
        s, b = self.session, self.b
        try:
            audio = base64.b64decode(message["audio"], validate=True)
        except (KeyError, TypeError, binascii.Error):
            await self.ws.send_json({"type": "error", "message": "invalid audio"})
            return True
        s.chunk_sizes.append(len(audio))
        s.audio += audio
        self.loud.append(any(audio))
        self.chunks += 1
        self.server.progress.notify()
        n = self.chunks
        if b.error_after_chunks and n == b.error_after_chunks:
            await self.ws.send_json({"type": "error", "message": "scripted failure"})
        if self.faulty and b.close_after_chunks and n == b.close_after_chunks:
            await self.ws.close(code=1011)
            s.closed_by = "server"
            return False
        if b.utterances is not None:
            await self.listen(audio)
        elif b.final_every_chunks and n - self.utterance_start == b.final_every_chunks:
            await self.transcript(final=True)
        elif b.partial_every_chunks and (n - self.utterance_start) % b.partial_every_chunks == 0:
            await self.transcript(final=False)
        return True

    async def answer_commit(self, end: int) -> None:
        """The final for the audio before the commit (that came after `end` chunks)."""
        if self.b.commit_delay_s:
            await asyncio.sleep(self.b.commit_delay_s)
        if self.b.utterances is not None:
            await self.heard(flush=True)
        else:
            await self.transcript(final=True, flush=True, end=end)
        self.session.answered += 1
        self.server.progress.notify()
        if self.b.close_after_commit:
            await self.ws.close(code=1000)
            self.session.closed_by = "server"

    async def transcript(self, *, final: bool, flush: bool = False, end: int = -1) -> None:
        """Words `c<i>` for each 10-chunk stretch since the utterance began (none for silence),
        timed by the chunks they cover."""
        start, end = self.utterance_start, self.chunks if end < 0 else end
        words = [
            (f"c{i}", i * CHUNK_SECONDS, min(i + 10, end) * CHUNK_SECONDS)
            for i in range(start, end, 10)
            if any(self.loud[i : min(i + 10, end)])
        ]
        message = transcription(
            words,
            final=final,
            start=start * CHUNK_SECONDS,
            end=end * CHUNK_SECONDS,
            language=self.b.language,
            word_timestamps=self.b.word_timestamps,
        )
        if flush:
            message["is_end_of_audio_flush"] = True
        await self.ws.send_json(message)
        if final:
            self.utterance_start = max(self.utterance_start, end)

    SILENCE_CHUNKS = 3  # 300 ms, about the server VAD's minimum silence
    LOUD = 64  # mean absolute sample value that counts as sound

    async def listen(self, audio: bytes) -> None:
        """Listening mode: a run of chunks with sound in them, ended by `SILENCE_CHUNKS` of
        silence, is an utterance."""
        n = self.chunks
        if np.abs(np.frombuffer(audio, dtype=np.int16)).mean() > self.LOUD:
            if self.speech_start is None:
                self.speech_start = n - 1
            self.last_loud = n
        elif self.speech_start is not None and n - self.last_loud >= self.SILENCE_CHUNKS:
            await self.heard()

    async def heard(self, *, flush: bool = False) -> None:
        """The final for the utterance in progress, named by its length (none: empty)."""
        start, end, words = self.speech_start, self.last_loud, []
        if start is not None:
            assert self.b.utterances is not None
            seconds = (end - start) * CHUNK_SECONDS
            _, text = min(self.b.utterances, key=lambda u: abs(u[0] - seconds))
            names = text.split()
            step = seconds / len(names)
            at = start * CHUNK_SECONDS
            words = [(w, at + i * step, at + (i + 1) * step) for i, w in enumerate(names)]
        message = transcription(
            words,
            final=True,
            start=(start or 0) * CHUNK_SECONDS,
            end=end * CHUNK_SECONDS,
            language=self.b.language,
        )
        if flush:
            message["is_end_of_audio_flush"] = True
        await self.ws.send_json(message)
        self.speech_start = None


def transcription(
    words: list[tuple[str, float, float]],
    *,
    final: bool,
    start: float,
    end: float,
    language: str | None = "English",
    word_timestamps: bool = True,
    prob: float = 0.8,
) -> dict[str, Any]:
    """A `transcription` message as Qwen3-ASR shapes it: segments with text and times, word
    timestamps only with the aligner on, the language by name."""
    segment: dict[str, Any] = {
        "text": " ".join(w for w, _, _ in words),
        "start_time": round(start, 3),
        "end_time": round(end, 3),
    }
    if word_timestamps:
        segment["word_timestamps"] = [
            {"word": w, "start_time": round(a, 3), "end_time": round(b, 3), "prob": prob}
            for w, a, b in words
        ]
    return {
        "type": "transcription",
        "is_final": final,
        "segments": [segment] if words else [],
        "language_code": language,
    }


# How long after an utterance's last sound its final goes out: the silence that ends it, and
# the chunk the sound ended in.
ENDPOINTING_S = (_Recogniser.SILENCE_CHUNKS + 1) * CHUNK_SECONDS
