"""Baseten Orpheus servers on 127.0.0.1: WebSocket streaming and HTTP predict.

Protocols as in Baseten's truss examples (spec `baseten-protocols.md` section 2). WebSocket:
a JSON metadata message, then text messages split on whitespace into words, `__END__`, then
binary 24 kHz PCM and the server closes. Predict: POST JSON with `prompt`, a chunked body of
PCM (optionally behind a 44-byte RIFF header, as older servers send). The "speech" is
deterministic (`speech_for`), so tests can compare the audio out with the audio served.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from .fake_whisper import Progress

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
        self.progress = Progress()
        self._runner: web.AppRunner | None = None
        self.ws_url = ""
        self.predict_url = ""

    async def start(self) -> FakeOrpheusServer:
        app = web.Application()
        app.router.add_get("/websocket", self._websocket)
        app.router.add_post("/predict", self._predict)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.ws_url = f"ws://127.0.0.1:{port}/websocket"
        self.predict_url = f"http://127.0.0.1:{port}/predict"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        self.attempts += 1
        b = self.behaviour
        if b.reject_status:
            return web.Response(status=b.reject_status, text=b.error_body)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
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
        if b.text_error:
            await ws.send_str(b.text_error)
        elif b.speak:
            audio = speech_for(words)
            for i in range(0, len(audio), b.chunk_bytes):
                if b.fail_after_bytes and i >= b.fail_after_bytes:
                    await ws.close(code=1011)
                    return ws
                await ws.send_bytes(audio[i : i + b.chunk_bytes])
        if b.close_after_end:
            await ws.close(code=b.close_code)
        else:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()  # never closes, never speaks again
        return ws

    async def _predict(self, request: web.Request) -> web.StreamResponse:
        self.attempts += 1
        b = self.behaviour
        body: dict[str, Any] = await request.json()
        session = OrpheusSession(headers=dict(request.headers), body=body)
        self.sessions.append(session)
        self.progress.notify()
        if b.reject_status:
            return web.Response(status=b.reject_status, text=b.error_body)
        response = web.StreamResponse(headers={"Content-Type": "audio/wav"})
        await response.prepare(request)
        audio = (WAV_HEADER if b.wav_header else b"") + speech_for(body["prompt"].split())
        for i in range(0, len(audio), b.chunk_bytes):
            await response.write(audio[i : i + b.chunk_bytes])
            if i == 0 and b.gate is not None:
                await b.gate.wait()
        await response.write_eof()
        return response
