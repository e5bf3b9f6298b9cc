# SPDX-License-Identifier: Apache-2.0

"""Baseten's Qwen3-TTS protocol, spoken by eSpeak NG, with word alignments from eSpeak's word
events; `voice.add` / `voice.list` keep named voices (each an eSpeak voice). The protocol is
described in docs/protocols.md."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from typing import Any

from aiohttp import WSMsgType, web

from . import _speech

logger = logging.getLogger("livekit.plugins.baseten.local")

CHUNK_BYTES = 4800  # 100 ms
# The server's limits: a session.config within 10 s of connecting, then a message every 30 s.
FIRST_CONFIG_S = 10.0
IDLE_S = 30.0
CONFIG_KEYS = frozenset(
    {"type", "task_type", "response_format", "stream_audio", "speed", "voice", "language",
     "instructions", "max_new_tokens", "initial_codec_chunk_frames", "x_vector_only_mode",
     "ref_audio", "ref_text", "timestamp_type", "timestamp_transport_strategy"}
)  # fmt: skip
# Preset speakers, as a CustomVoice deployment has; registered voices come on top.
PRESETS = dict(_speech.VOICES)
# What a registered voice sounds like: an eSpeak voice picked by the name.
_CLONE_VOICES = sorted(set(_speech.VOICES.values()))
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
VOICES_KEY = web.AppKey("qwen3_voices", dict)


def _clone_voice(name: str) -> str:
    digest = hashlib.sha256(name.encode()).digest()
    return _CLONE_VOICES[digest[0] % len(_CLONE_VOICES)]


class _Refused(Exception):
    """A message the server answers with an `error` event."""


async def websocket(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(max_msg_size=16 << 20)
    await ws.prepare(request)
    voices: dict[str, dict[str, Any]] = request.app[VOICES_KEY]
    with contextlib.suppress(ConnectionError):  # the client went away mid-reply
        await _Session(ws, voices).run()
    return ws


class _Session:
    def __init__(self, ws: web.WebSocketResponse, voices: dict[str, dict[str, Any]]) -> None:
        self.ws = ws
        self.voices = voices
        self.config: dict[str, Any] | None = None
        self.espeak_voice = ""
        self.text = ""
        self.sentence_index = 0

    async def run(self) -> None:
        limit = FIRST_CONFIG_S
        while True:
            try:
                msg = await self.ws.receive(timeout=limit)
            except asyncio.TimeoutError:
                await self.ws.close(code=1000, message=b"idle")
                return
            if msg.type != WSMsgType.TEXT:
                return
            limit = IDLE_S
            try:
                message = json.loads(msg.data)
                if not isinstance(message, dict):
                    raise _Refused("expected a JSON object")
                if not await self._handle(message):
                    return
            except (_Refused, ValueError) as e:
                await self.ws.send_json({"type": "error", "message": str(e)})

    async def _handle(self, message: dict[str, Any]) -> bool:
        """Acts on one message; False when the session is over."""
        kind = message.get("type")
        if kind == "voice.add":
            await self.ws.send_json(self._add_voice(message))
        elif kind == "voice.list":
            await self.ws.send_json(
                {
                    "type": "voice.list",
                    "voices": sorted(PRESETS),
                    "uploaded_voices": list(self.voices.values()),
                }
            )
        elif kind == "session.config":
            self._configure(message)
        elif kind == "input.text":
            if self.config is None:
                raise _Refused("send session.config first")
            self.text += str(message.get("text", ""))
            # Whole sentences are spoken as soon as they are complete.
            *sentences, self.text = _SENTENCE_END.split(self.text)
            for sentence in sentences:
                await self._speak(sentence)
        elif kind == "input.done":
            if self.text.strip():
                await self._speak(self.text)
            self.text = ""
            await self.ws.send_json({"type": "session.done"})
        elif kind == "session.close":
            await self.ws.close()
            return False
        else:
            raise _Refused(f"unknown message type {kind!r}")
        return True

    def _configure(self, config: dict[str, Any]) -> None:
        if unknown := sorted(config.keys() - CONFIG_KEYS):
            raise _Refused(f"unrecognized session.config fields: {unknown}")
        if config.get("response_format", "pcm") != "pcm" or config.get("speed", 1.0) != 1.0:
            raise _Refused("streaming audio is PCM at speed 1.0 only")
        voice = str(config.get("voice", ""))
        if "ref_audio" in config:
            self.espeak_voice = _clone_voice(str(config["ref_audio"]))
        elif voice in self.voices:
            self.espeak_voice = self.voices[voice]["espeak_voice"]
        elif voice in PRESETS:
            self.espeak_voice = PRESETS[voice]
        else:
            raise _Refused(f"voice {voice!r} not found: register it with voice.add")
        self.config = config
        logger.info("qwen3-tts session: voice=%s (%s)", voice, self.espeak_voice)

    def _add_voice(self, message: dict[str, Any]) -> dict[str, Any]:
        name = message.get("name")
        if not isinstance(name, str) or not name or not message.get("audio_data"):
            return {"type": "error", "message": "voice.add needs a name and audio_data"}
        voice = {
            "name": name,
            "audio_format": message.get("audio_format", "wav"),
            "ref_text": message.get("ref_text"),
            "espeak_voice": _clone_voice(name),
        }
        self.voices[name] = voice
        return {"type": "voice.added", "success": True, "voice": voice}

    async def _speak(self, sentence: str) -> None:
        sentence = sentence.strip()
        if not sentence:
            return
        assert self.config is not None
        index, self.sentence_index = self.sentence_index, self.sentence_index + 1
        await self.ws.send_json(
            {"type": "audio.start", "sentence_index": index, "sample_rate": _speech.SAMPLE_RATE}
        )
        pcm, words = await _speech.synthesize_timed(sentence, self.espeak_voice)
        for i in range(0, len(pcm), CHUNK_BYTES):
            await self.ws.send_bytes(pcm[i : i + CHUNK_BYTES])
        done: dict[str, Any] = {"type": "audio.done", "sentence_index": index}
        if self.config.get("timestamp_type") == "word":
            done["timestamp_info"] = {"word_alignment": _alignment(sentence, words, len(pcm))}
        await self.ws.send_json(done)


def _alignment(sentence: str, words: list[_speech.Word], pcm_bytes: int) -> dict[str, list[Any]]:
    """eSpeak's words as the server's alignment, one entry per whitespace-delimited token of
    the sentence (punctuation kept), each ending where the next begins and the last where the
    audio does. eSpeak speaks some pairs as one word ("has been"): a token it gives no event
    of its own starts between its neighbours."""
    total_s = pcm_bytes / 2 / _speech.SAMPLE_RATE
    tokens = [(m.start(), m.end()) for m in re.finditer(r"\S+", sentence)]
    known: dict[int, float] = {}
    for word in words:
        at = next((i for i, (a, b) in enumerate(tokens) if a <= word.start_char < b), None)
        if at is not None and at not in known:
            known[at] = min(word.start_s, total_s)
    starts: list[float] = []
    for i in range(len(tokens)):
        if i in known:
            starts.append(known[i])
            continue
        before = starts[-1] if starts else 0.0
        after_at = next((j for j in range(i + 1, len(tokens)) if j in known), len(tokens))
        after = known.get(after_at, total_s)
        # Evenly between the last known start and the next (the end, if none).
        step = (after - before) / (after_at - i + 1)
        starts.append(before + step)
    if starts and 0 not in known:
        starts[0] = 0.0
    ends = [*starts[1:], total_s]
    return {
        "words": [sentence[a:b] for a, b in tokens],
        "word_start_times_seconds": [round(s, 3) for s in starts],
        "word_end_times_seconds": [round(e, 3) for e in ends],
    }
