# SPDX-License-Identifier: Apache-2.0

"""Registering and listing Qwen3-TTS voice clones: one request on its own WebSocket to the
deployment (`voice.add`, `voice.list`), one reply.

A registered voice lives on the replica that took it (its local disk) until that replica
restarts: for more than one replica, bake voices into the deployment instead.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
from livekit.agents import APIConnectionError, APIError, APIStatusError, APITimeoutError, utils

from ._endpoint import resolve_api_key, resolve_endpoint
from ._qwen3_tts import MAX_MESSAGE_BYTES
from ._websocket import connect

if sys.version_info >= (3, 11):
    from asyncio import timeout as deadline
else:  # aiohttp depends on async-timeout before 3.11
    from async_timeout import timeout as deadline

# A clone takes the server a few seconds (it embeds the reference audio); the default leaves
# room for that on a busy replica.
DEFAULT_TIMEOUT_S = 30.0
MAX_ERROR_CHARS = 2000


class VoiceRequestError(APIStatusError, RuntimeError):
    """The deployment refused a voice request. Also a RuntimeError, which is what the
    existing plugin raises for a refusal."""


async def register_voice(
    *,
    model_endpoint: str,
    name: str,
    ref_audio_path: str,
    ref_text: str | None = None,
    api_key: str | None = None,
    consent: str = "user_consent",
    http_session: aiohttp.ClientSession | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> dict[str, Any]:
    """Clones a voice on a Qwen3-TTS deployment from 10-20 s of clean speech and returns the
    server's description of it. ``ref_text`` (the transcript) makes the clone more faithful.

    The voice lives on the replica that took it until that replica restarts.

    Args:
        model_endpoint: the deployment's ``wss://`` WebSocket URL.
        name: the voice's name, then passed as ``TTS(model="qwen3-tts", voice=name)``.
        ref_audio_path: the reference recording; its extension names the format (else wav).
        ref_text: what the recording says.
        api_key: defaults to ``BASETEN_API_KEY``.
        consent: the consent statement the server records with the clone.
        http_session: the aiohttp session to use: by default the job's inside a LiveKit job,
            else a session of its own for this call.
        timeout: seconds for the whole request, connect included.

    Raises:
        ValueError: no key, a bad endpoint or an empty name. OSError: the file cannot be read.
        VoiceRequestError (an APIStatusError and a RuntimeError): the server refused.
        APIStatusError, APIConnectionError, APITimeoutError: the connection failed.
    """
    if not name:
        raise ValueError("a voice needs a name")
    path = Path(ref_audio_path)
    audio = await asyncio.to_thread(path.read_bytes)
    message: dict[str, Any] = {
        "type": "voice.add",
        "name": name,
        "consent": consent,
        "audio_data": base64.b64encode(audio).decode(),
        "audio_format": path.suffix.lstrip(".").lower() or "wav",
    }
    if ref_text:
        message["ref_text"] = ref_text
    reply = await _request(model_endpoint, api_key, message, http_session, timeout)
    if reply.get("type") == "error" or not reply.get("success"):
        raise _refusal("voice.add", reply)
    voice = reply.get("voice", reply)
    return voice if isinstance(voice, dict) else reply


async def list_voices(
    *,
    model_endpoint: str,
    api_key: str | None = None,
    http_session: aiohttp.ClientSession | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> dict[str, Any]:
    """The deployment's voices: ``{"voices": [...], "uploaded_voices": [...]}`` (the built-in
    presets, none on a Base deployment, and the registered clones of the replica that
    answered). Arguments and errors as for ``register_voice``."""
    reply = await _request(model_endpoint, api_key, {"type": "voice.list"}, http_session, timeout)
    if reply.get("type") == "error":
        raise _refusal("voice.list", reply)
    return reply


async def _request(
    model_endpoint: str,
    api_key: str | None,
    message: dict[str, Any],
    http_session: aiohttp.ClientSession | None,
    timeout: float,
) -> dict[str, Any]:
    """Sends `message` on a socket of its own and returns the reply, within `timeout`."""
    endpoint = resolve_endpoint(
        model_endpoint=model_endpoint,
        model_id=None,
        chain_id=None,
        truss_template="",
        chain_template="",
        schemes=("wss", "ws"),
    )
    key = resolve_api_key(api_key)
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    if http_session is not None:
        return await _exchange(http_session, endpoint, key, message, timeout)
    try:
        session = utils.http_context.http_session()
    except RuntimeError:  # outside a LiveKit job: a session for this call alone
        async with aiohttp.ClientSession() as own:
            return await _exchange(own, endpoint, key, message, timeout)
    return await _exchange(session, endpoint, key, message, timeout)


async def _exchange(
    session: aiohttp.ClientSession,
    endpoint: str,
    api_key: str,
    message: dict[str, Any],
    timeout: float,
) -> dict[str, Any]:
    kind = message["type"]
    error: APIError | None = None
    raw = ""
    try:
        async with deadline(timeout):
            # connect() raises typed errors with no trace of the request headers.
            ws = await connect(
                session, endpoint, api_key=api_key, timeout=timeout, max_msg_size=MAX_MESSAGE_BYTES
            )
            try:
                await ws.send_str(json.dumps(message))
                msg = await ws.receive()
            finally:
                await ws.close()
        if msg.type != aiohttp.WSMsgType.TEXT:
            error = APIConnectionError(
                f"Baseten closed the connection before answering {kind} (code {ws.close_code})"
            )
        else:
            raw = msg.data
    except asyncio.TimeoutError:
        error = APITimeoutError(f"Baseten did not answer {kind} within {timeout:g}s")
    except (aiohttp.ClientError, ConnectionError) as e:
        error = APIConnectionError(f"Baseten connection lost during {kind}: {type(e).__name__}")
    if error is not None:
        raise error  # outside the except blocks: no aiohttp exception in its context
    try:
        reply = json.loads(raw)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        raise APIError(
            f"Baseten answered {kind} with something that is not a JSON object",
            body=raw[:MAX_ERROR_CHARS],
            retryable=False,
        )
    return reply


def _refusal(kind: str, reply: dict[str, Any]) -> VoiceRequestError:
    detail = str(reply.get("message") or reply)[:MAX_ERROR_CHARS]
    return VoiceRequestError(
        f"Baseten refused {kind}: {detail}", status_code=400, body=reply, retryable=False
    )
