# SPDX-License-Identifier: Apache-2.0

"""Baseten's Orpheus TTS protocols (WebSocket streaming and HTTP predict), spoken by eSpeak NG.
The protocols are described in docs/protocols.md."""

from __future__ import annotations

import contextlib
import json
import logging
import re

from aiohttp import WSMsgType, web

from . import _speech

logger = logging.getLogger("livekit.plugins.baseten.local")

END = "__END__"
CHUNK_BYTES = 4096  # about 85 ms, as the real server sends
MAX_PROMPT_CHARS = 6144  # the predict server refuses longer prompts with HTTP 400
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*$")


async def websocket(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(max_msg_size=1 << 20)
    await ws.prepare(request)
    with contextlib.suppress(ConnectionError):  # the client went away mid-reply
        await _converse(ws)
    return ws


async def _converse(ws: web.WebSocketResponse) -> None:
    first = await ws.receive()
    try:
        meta = json.loads(first.data) if first.type == WSMsgType.TEXT else {}
        voice = str(meta.get("voice", "tara"))
        buffer_size = int(meta.get("buffer_size", 10))
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        await ws.close(code=1011, message=b"invalid metadata")
        return
    logger.info("orpheus websocket session: voice=%s buffer_size=%d", voice, buffer_size)
    words: list[str] = []
    async for msg in ws:
        if msg.type != WSMsgType.TEXT:
            continue
        if msg.data == END:
            break
        # Like the real server: every message is split on whitespace into words; complete
        # sentences, or buffer_size words, go to the model.
        words += msg.data.strip().split()
        while words:
            cut = next((i + 1 for i, w in enumerate(words) if _SENTENCE_END.search(w)), 0)
            if not cut and len(words) >= buffer_size:
                cut = buffer_size
            if not cut:
                break
            await _speak(ws, " ".join(words[:cut]), voice)
            words = words[cut:]
    if words:
        await _speak(ws, " ".join(words), voice)
    await ws.close()


async def _speak(ws: web.WebSocketResponse, text: str, voice: str) -> None:
    pcm = await _speech.synthesize(text, voice)
    for i in range(0, len(pcm), CHUNK_BYTES):
        await ws.send_bytes(pcm[i : i + CHUNK_BYTES])


async def predict(request: web.Request) -> web.StreamResponse:
    try:
        body = await request.json()
        prompt = str(body["prompt"])
        voice = str(body.get("voice", "tara"))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        return web.Response(status=400, text="expected a JSON body with a 'prompt'")
    if len(prompt) > MAX_PROMPT_CHARS:
        return web.Response(status=400, text=f"prompt longer than {MAX_PROMPT_CHARS} characters")
    logger.info("orpheus predict: voice=%s, %d characters", voice, len(prompt))
    # Newer servers send bare PCM despite the content type (older ones a WAV header first).
    response = web.StreamResponse(headers={"Content-Type": "audio/wav"})
    await response.prepare(request)
    with contextlib.suppress(ConnectionError):  # the client went away mid-reply
        for sentence in re.split(r"(?<=[.!?])\s+", prompt.strip()):
            if sentence:
                await response.write(await _speech.synthesize(sentence, voice))
        await response.write_eof()
    return response
