# SPDX-License-Identifier: Apache-2.0

"""Baseten's Qwen3-ASR streaming protocol, served by the same engines as the Whisper path
(Silero VAD, Whisper tiny.en): only the messages differ. The audio comes as base64 in
`input_audio_buffer.append` text messages of any length, `input_audio_buffer.commit`
transcribes what is held at once and is always answered, by a final marked
`is_end_of_audio_flush` (empty when nothing was said), and languages go by name ("English").
The protocol is described in docs/protocols.md."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from .. import _native
from . import _recognizer
from ._schema import MetadataError, SessionConfig, parse_metadata
from ._vad import SAMPLE_RATE, WINDOW
from ._whisper_server import WhisperSession, _Job

logger = logging.getLogger("livekit.plugins.baseten.local")

LANGUAGE = "English"  # Whisper tiny.en's only one, as Qwen3-ASR names it


async def handle(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(max_msg_size=1 << 22)
    await ws.prepare(request)
    first = await ws.receive()
    try:
        if first.type != WSMsgType.TEXT:
            raise MetadataError("the first message must be the JSON handshake")
        config = parse_metadata(json.loads(first.data))
    except (MetadataError, json.JSONDecodeError) as e:
        logger.info("qwen3-asr session refused: %s", e)
        await ws.close(code=1011, message=b"invalid handshake")
        return ws
    if config.language.lower() not in (LANGUAGE.lower(), "auto"):
        await _send_error(
            ws, f"this local server transcribes English only, not {config.language!r}"
        )
        await ws.close(code=1011)
        return ws
    session = Qwen3AsrSession(ws, config)
    logger.info("qwen3-asr session opened: %s", config)
    started = time.monotonic()
    try:
        await session.run()
    except ConnectionError:
        pass  # the client went away mid-reply
    finally:
        logger.info(
            "qwen3-asr session closed after %.1fs: %.1fs of audio, %d transcripts",
            time.monotonic() - started,
            session.samples / SAMPLE_RATE,
            session.sent,
        )
    return ws


class Qwen3AsrSession(WhisperSession):
    """A Whisper session whose audio and control come as Qwen3-ASR's JSON messages."""

    def __init__(self, ws: web.WebSocketResponse, config: SessionConfig) -> None:
        super().__init__(ws, config)
        # Appends may hold any number of samples; the VAD takes 512 at a time.
        self.windows = _native.Rebuffer(2 * WINDOW)

    async def _on_audio(self, data: bytes) -> bool:
        await _send_error(self.ws, "binary messages are not part of this protocol")
        return True

    async def _on_control(self, text: str) -> None:
        try:
            message = json.loads(text)
            kind = message["type"]
        except (json.JSONDecodeError, KeyError, TypeError):
            await _send_error(self.ws, "invalid message")
            return
        if kind == "input_audio_buffer.append":
            try:
                audio = base64.b64decode(message["audio"], validate=True)
            except (KeyError, TypeError, binascii.Error):
                await _send_error(self.ws, "invalid audio: expected base64 of 16 kHz int16")
                return
            self._on_samples(self.windows.push(audio))
        elif kind == "input_audio_buffer.commit":
            await self._commit()
        else:
            await _send_error(self.ws, f"unknown message type {kind!r}")

    def _on_samples(self, frames: list[bytes]) -> None:
        for frame in frames:
            self._on_window(np.frombuffer(frame, dtype=np.int16).astype(np.float32) / 32768.0)

    async def _commit(self) -> None:
        """Transcribes the utterance in progress now, or answers that there is none."""
        self._on_samples(self.windows.flush(pad=True))
        if self.utterance is not None:
            self._queue(_Job(self.utterance, self.samples, final=True, flush=True))
            self.utterance = None
            return
        await self.jobs.join()  # after the finals already on their way
        await self.ws.send_json(
            {"type": "transcription", "is_final": True, "segments": [],
             "language_code": LANGUAGE, "is_end_of_audio_flush": True}
        )  # fmt: skip
        self.sent += 1

    def _result(self, job: _Job, first: int, segments: list[_recognizer.Segment]) -> dict[str, Any]:
        message = super()._result(job, first, segments)
        message["language_code"] = LANGUAGE
        for segment in message["segments"]:
            segment["language_code"] = LANGUAGE
        return message


async def _send_error(ws: web.WebSocketResponse, message: str) -> None:
    await ws.send_json({"type": "error", "message": message})
