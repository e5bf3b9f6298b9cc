# SPDX-License-Identifier: Apache-2.0

"""A Baseten Qwen3-TTS server on 127.0.0.1, from the protocol in docs/protocols.md.

A session: `session.config`, `input.text`s, `input.done`; the server answers each sentence
with `audio.start`, binary 24 kHz PCM and `audio.done` (with the word alignment when the config
asks for it), then `session.done`; an empty `input.done` is answered by `session.done` alone
(the client's keepalive). `voice.add` and `voice.list` as a socket's first message are
answered once. The speech is `speech_for` (0.1 s a word), so tests can compare what comes
out with what was served. Knobs (`Qwen3Behaviour`) refuse, cut, stall, misalign or script it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from .fake_orpheus import SAMPLES_PER_WORD, speech_for
from .fake_tcp import Progress, reset, serve

WORD_S = SAMPLES_PER_WORD / 24000


@dataclass
class Qwen3Behaviour:
    reject_status: int = 0  # refuse the handshake with this status
    error: str = ""  # answer input.done with an error event carrying this message
    sentence_error: str = ""  # audio.done of the first sentence carries this error
    silent: bool = False  # never answer input.done (keepalives included)
    answer_keepalive: bool = True
    close_after_sessions: int = 0  # close the socket (code 1001) after this many session.done
    close_mid_audio: bool = False  # close with 1011 after the first audio chunk
    reset_on_config: bool = False  # drop the connection (TCP reset) on session.config
    sample_rate: int = 24000
    ragged_alignment: bool = False  # one start time too few
    frames: list[str | bytes] | None = None  # sent after input.done instead of the speech
    chunk_bytes: int = 4800
    gate: asyncio.Event | None = None  # hold the audio of each sentence until set
    voice_reply: dict[str, Any] | None = None  # answer voice.add / voice.list with this
    control_silent: bool = False  # never answer voice.add / voice.list


@dataclass
class Qwen3Connection:
    headers: dict[str, str]
    messages: list[dict[str, Any]] = field(default_factory=list)
    closed_by_server: bool = False

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == kind]


class FakeQwen3TTSServer:
    def __init__(self) -> None:
        self.behaviour = Qwen3Behaviour()
        self.connections: list[Qwen3Connection] = []
        self.voices: dict[str, dict[str, Any]] = {}
        self.progress = Progress()
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self.url = ""

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> FakeQwen3TTSServer:
        app = web.Application()
        app.router.add_get("/websocket", self._websocket)
        self._runner, self.port = await serve(app, ssl_context)
        self.url = f"ws{'s' if ssl_context else ''}://127.0.0.1:{self.port}/websocket"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def close_idle_sockets(self, code: int = 1001) -> None:
        """Closes every open socket, as a server does at its idle limit."""
        for ws in list(self._sockets):
            await ws.close(code=code)

    def all_messages(self) -> list[dict[str, Any]]:
        return [m for c in self.connections for m in c.messages]

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        b = self.behaviour
        if b.reject_status:
            self.connections.append(Qwen3Connection(headers=dict(request.headers)))
            self.progress.notify()
            return web.Response(status=b.reject_status, text="scripted refusal")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        conn = Qwen3Connection(headers=dict(request.headers))
        self.connections.append(conn)
        self._sockets.add(ws)
        self.progress.notify()
        try:
            with contextlib.suppress(ConnectionError):
                await self._converse(request, ws, conn)
        finally:
            self._sockets.discard(ws)
            self.progress.notify()
        return ws

    async def _converse(
        self, request: web.Request, ws: web.WebSocketResponse, conn: Qwen3Connection
    ) -> None:
        b = self.behaviour
        config: dict[str, Any] | None = None
        text = ""
        sessions = 0
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            message = json.loads(msg.data)
            conn.messages.append(message)
            self.progress.notify()
            kind = message.get("type")
            if kind in ("voice.add", "voice.list") and len(conn.messages) == 1:
                await self._control(ws, message)
                return
            if kind == "session.config":
                config = message
                if b.reset_on_config:
                    conn.closed_by_server = True
                    reset(request.transport)
                    return
            elif kind == "input.text":
                text += message["text"]
            elif kind == "session.close":
                await ws.close()
                return
            elif kind == "input.done":
                if b.silent or (not text.strip() and not b.answer_keepalive):
                    continue
                if b.error:
                    await ws.send_json({"type": "error", "message": b.error})
                    continue
                if b.frames is not None:
                    for frame in b.frames:
                        await (
                            ws.send_str(frame) if isinstance(frame, str) else ws.send_bytes(frame)
                        )
                    continue
                if not await self._speak(ws, text, config or {}):
                    conn.closed_by_server = True
                    return
                text = ""
                await ws.send_json({"type": "session.done"})
                sessions += 1
                if b.close_after_sessions and sessions >= b.close_after_sessions:
                    conn.closed_by_server = True
                    await ws.close(code=1001)
                    return

    async def _speak(self, ws: web.WebSocketResponse, text: str, config: dict[str, Any]) -> bool:
        """Speaks `text` sentence by sentence; False when the socket was cut."""
        b = self.behaviour
        timed = config.get("timestamp_type") == "word"
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]
        for index, sentence in enumerate(sentences):
            words = sentence.split()
            await ws.send_json(
                {"type": "audio.start", "sentence_index": index, "sample_rate": b.sample_rate}
            )
            if b.gate is not None:
                await b.gate.wait()
            audio = speech_for(words)
            for i in range(0, len(audio), b.chunk_bytes):
                await ws.send_bytes(audio[i : i + b.chunk_bytes])
                if b.close_mid_audio:
                    await ws.close(code=1011)
                    return False
            done: dict[str, Any] = {"type": "audio.done", "sentence_index": index}
            if b.sentence_error and index == 0:
                done["error"] = b.sentence_error
            elif timed:
                starts = [round(i * WORD_S, 3) for i in range(len(words))]
                done["timestamp_info"] = {
                    "word_alignment": {
                        "words": [w.strip(".,!?") for w in words],
                        "word_start_times_seconds": starts[:-1] if b.ragged_alignment else starts,
                        "word_end_times_seconds": [round(s + WORD_S, 3) for s in starts],
                    }
                }
            await ws.send_json(done)
        return True

    async def _control(self, ws: web.WebSocketResponse, message: dict[str, Any]) -> None:
        b = self.behaviour
        if b.control_silent:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()
            return
        if b.voice_reply is not None:
            await ws.send_json(b.voice_reply)
        elif message["type"] == "voice.add":
            voice = {"name": message["name"], "created_at": time.time()}
            self.voices[message["name"]] = voice
            await ws.send_json({"type": "voice.added", "success": True, "voice": voice})
        else:
            await ws.send_json(
                {"type": "voice.list", "voices": [], "uploaded_voices": list(self.voices.values())}
            )
        await ws.close()
