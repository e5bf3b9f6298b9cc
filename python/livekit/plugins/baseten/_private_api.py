# SPDX-License-Identifier: Apache-2.0

"""The private attributes of LiveKit Agents and aiohttp that this plugin relies on, all here.

Each has a test of its own (tests/test_private_api.py): an upgrade that moves one fails the
test named after it, rather than a stream somewhere downstream.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import aiohttp
from livekit import rtc
from livekit.agents import APIConnectOptions, stt


class WriteFlowControl(Protocol):
    """What the socket's protocol offers for flow control (aiohttp's `BaseProtocol`)."""

    @property
    def writing_paused(self) -> bool: ...

    async def _drain_helper(self) -> None: ...


def audio_frame_buffer(frame: rtc.AudioFrame) -> bytes | bytearray | memoryview:
    """The frame's own buffer: `AudioFrame._data`. The public `data` builds two memoryviews per
    access (about 0.3 us, as much as the whole Rust pipeline at 16 kHz)."""
    data = getattr(frame, "_data", None)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return data
    return frame.data


def websocket_transport(ws: aiohttp.ClientWebSocketResponse) -> asyncio.Transport:
    """The transport under a connected WebSocket (`ws._writer.transport`), to write the audio
    frames the Rust core built (already framed and masked) without aiohttp's Python framing."""
    transport = getattr(getattr(ws, "_writer", None), "transport", None)
    if not isinstance(transport, asyncio.Transport):
        raise RuntimeError(f"aiohttp {aiohttp.__version__} hides the WebSocket's transport")
    return transport


def websocket_flow_control(ws: aiohttp.ClientWebSocketResponse) -> WriteFlowControl:
    """The protocol under a connected WebSocket (`ws._writer.protocol`): it says when the
    transport's buffer is full, as aiohttp's own writer asks it."""
    protocol: WriteFlowControl | None = getattr(getattr(ws, "_writer", None), "protocol", None)
    if protocol is None or not all(
        hasattr(protocol, name) for name in ("writing_paused", "_drain_helper")
    ):
        raise RuntimeError(f"aiohttp {aiohttp.__version__} hides the WebSocket's flow control")
    return protocol


async def wait_until_writable(protocol: WriteFlowControl) -> None:
    """Returns once the transport takes writes again (`BaseProtocol._drain_helper`, what
    aiohttp's `send_bytes` awaits); raises ConnectionResetError if the connection is lost."""
    await protocol._drain_helper()


def stop_heartbeat(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Turns aiohttp's heartbeat off on a connected WebSocket (`_heartbeat`,
    `_cancel_heartbeat`): the watch over a spare socket, which the stream that takes it
    replaces with deadlines of its own."""
    if not hasattr(ws, "_heartbeat") or not hasattr(ws, "_cancel_heartbeat"):
        raise RuntimeError(f"aiohttp {aiohttp.__version__} hides the WebSocket's heartbeat")
    ws._heartbeat = None
    ws._cancel_heartbeat()


def check_input_open(stream: stt.RecognizeStream) -> None:
    """Raises the base class's own RuntimeError for input after `end_input()` or `aclose()`
    (`_check_input_not_ended`, `_check_not_closed`)."""
    stream._check_input_not_ended()
    stream._check_not_closed()


def retry_interval(options: APIConnectOptions, failures: int) -> float:
    """The wait before the next attempt, as LiveKit's own retry loops compute it
    (`APIConnectOptions._interval_for_retry`)."""
    return options._interval_for_retry(failures)
