# SPDX-License-Identifier: Apache-2.0

"""Baseten Orpheus servers on 127.0.0.1: WebSocket streaming and HTTP predict.

Protocols as in Baseten's truss examples (described in docs/protocols.md). WebSocket:
a JSON metadata message, then text messages split on whitespace into words, `__END__`, then
binary 24 kHz PCM and the server closes. Predict: POST JSON with `prompt`, a chunked body of
PCM (optionally behind a 44-byte RIFF header, as older servers send). The "speech" is
deterministic (`speech_for`), so tests can compare the audio out with the audio served. Knobs
(`OrpheusBehaviour`) refuse, cut (close or TCP reset) or stall a response, or send scripted
frames instead of speech; TLS with `start(ssl_context)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from .fake_tcp import Progress, reset, serve

SAMPLES_PER_WORD = 2400  # 0.1 s at 24 kHz


def speech_for(words: list[str]) -> bytes:
    """The audio the fake servers speak for `words`: a distinct level per word."""
    out = bytearray()
    for word in words:
        level = sum(word.encode()) % 20000 - 10000
        out += struct.pack("<h", level) * SAMPLES_PER_WORD
    return bytes(out)


WAV_HEADER = (
    b"RIFF"
    + struct.pack("<I", 0)
    + b"WAVEfmt "
    + struct.pack("<IHHIIHH", 16, 1, 1, 24000, 48000, 2, 16)
    + b"data"
    + struct.pack("<I", 0)
)


@dataclass
class OrpheusBehaviour:
    reject_status: int = 0  # refuse the WebSocket handshake / predict with this status
    error_body: str = "scripted failure"
    text_error: str = ""  # WebSocket: send this text message instead of audio
    close_after_end: bool = True  # WebSocket: close once everything is spoken
    speak: bool = True  # WebSocket: False sends no audio at all after __END__
    close_code: int = 1000  # WebSocket: the code of that close
    fail_after_bytes: int = 0  # WebSocket: close with 1011 after this much audio
    wav_header: bool = False  # predict: put a RIFF header first
    chunk_bytes: int = 4096  # size of the audio pieces sent
    gate: asyncio.Event | None = None  # predict: hold the rest of the body until set
    # Cut the response after this much audio (0: before any; predict: before the response
    # head), with a TCP reset ("reset") or a close ("close": WebSocket code 1011, or for
    # predict the connection closed in the middle of the body).
    cut_after_bytes: int | None = None
    cut_with: str = "reset"
    faulty_attempts: int = 0  # reject_status and cut_after_bytes spare attempts after the Nth
    endless_error_body: bool = False  # predict: the error body never ends
    frames: list[str | bytes] | None = None  # WebSocket: sent after __END__ instead of speech
    drop_idle: int = 0  # WebSocket: close the first N sockets right after their handshake


@dataclass
class OrpheusSession:
    headers: dict[str, str]
    metadata: dict[str, Any] | None = None
    texts: list[str] = field(default_factory=list)  # WebSocket text messages, in order
    body: dict[str, Any] | None = None  # predict request body


class FakeOrpheusServer:
    def __init__(self) -> None:
        self.behaviour = OrpheusBehaviour()
        self.sessions: list[OrpheusSession] = []
        self.attempts = 0
        self.dropped = 0  # sockets closed by drop_idle
        self.attempt_times: list[float] = []  # time.monotonic() of each attempt
        self.progress = Progress()
        self._runner: web.AppRunner | None = None
        self.ws_url = ""
        self.predict_url = ""

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> FakeOrpheusServer:
        app = web.Application()
        app.router.add_get("/websocket", self._websocket)
        app.router.add_post("/predict", self._predict)
        self._runner, self.port = await serve(app, ssl_context)
        tls = "s" if ssl_context else ""
        self.ws_url = f"ws{tls}://127.0.0.1:{self.port}/websocket"
        self.predict_url = f"http{tls}://127.0.0.1:{self.port}/predict"
        return self

    def _attempt(self) -> bool:
        """Counts an attempt; whether the scripted faults apply to it."""
        self.attempts += 1
        self.attempt_times.append(time.monotonic())
        self.progress.notify()
        b = self.behaviour
        return not b.faulty_attempts or self.attempts <= b.faulty_attempts

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        faulty = self._attempt()
        b = self.behaviour
        if b.reject_status and faulty:
            return web.Response(status=b.reject_status, text=b.error_body)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if self.attempts <= b.drop_idle:
            self.dropped += 1
            await ws.close(code=1001)  # "going away", as a server restarting or shedding load
            self.progress.notify()
            return ws
        session = OrpheusSession(headers=dict(request.headers))
        self.sessions.append(session)
        words: list[str] = []
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            if session.metadata is None:
                session.metadata = json.loads(msg.data)
                continue
            session.texts.append(msg.data)
            self.progress.notify()
            if msg.data == "__END__":
                break
            words += msg.data.strip().split()  # exactly what the real server does
        cut = b.cut_after_bytes if faulty else None
        if b.text_error:
            await ws.send_str(b.text_error)
        elif b.frames is not None:
            for frame in b.frames:
                if isinstance(frame, str):
                    await ws.send_str(frame)
                else:
                    await ws.send_bytes(frame)
        elif b.speak:
            audio = speech_for(words)
            for i in range(0, len(audio), b.chunk_bytes):
                if cut is not None and i >= cut:
                    break
                if b.fail_after_bytes and i >= b.fail_after_bytes:
                    await ws.close(code=1011)
                    return ws
                await ws.send_bytes(audio[i : i + b.chunk_bytes])
        if cut is not None:
            if b.cut_with == "reset":
                reset(request.transport)
            else:
                await ws.close(code=1011)
            return ws
        if b.close_after_end:
            await ws.close(code=b.close_code)
        else:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()  # never closes, never speaks again
        return ws

    async def _predict(self, request: web.Request) -> web.StreamResponse:
        faulty = self._attempt()
        b = self.behaviour
        body: dict[str, Any] = await request.json()
        session = OrpheusSession(headers=dict(request.headers), body=body)
        self.sessions.append(session)
        self.progress.notify()
        if b.reject_status and faulty:
            if b.endless_error_body:
                return await self._endless(request, b.reject_status)
            return web.Response(status=b.reject_status, text=b.error_body)
        cut = b.cut_after_bytes if faulty else None
        if cut == 0:
            self._cut(request)
            return web.Response()  # never sent: the connection is gone
        response = web.StreamResponse(headers={"Content-Type": "audio/wav"})
        await response.prepare(request)
        audio = (WAV_HEADER if b.wav_header else b"") + speech_for(body["prompt"].split())
        for i in range(0, len(audio), b.chunk_bytes):
            if cut is not None and i >= cut:
                self._cut(request)
                return response
            await response.write(audio[i : i + b.chunk_bytes])
            if i == 0 and b.gate is not None:
                await b.gate.wait()
        await response.write_eof()
        return response

    def _cut(self, request: web.Request) -> None:
        if self.behaviour.cut_with == "reset":
            reset(request.transport)
        elif request.transport is not None:
            request.transport.close()

    @staticmethod
    async def _endless(request: web.Request, status: int) -> web.StreamResponse:
        """An error whose body never ends (until the client goes away)."""
        response = web.StreamResponse(status=status, headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        line = b"the fake server has a lot to say about this error\n" * 1000
        with contextlib.suppress(ConnectionError):
            while True:
                await response.write(line)
        return response
