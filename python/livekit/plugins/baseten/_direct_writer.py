# SPDX-License-Identifier: Apache-2.0

"""Audio frames written straight to a WebSocket's transport, from the caller's task."""

from __future__ import annotations

import asyncio

import aiohttp

from . import _native

# Past this many bytes waiting in the transport the server is not keeping up: frames then wait
# in the outbox for the sender task, which honours aiohttp's flow control. aiohttp's own
# writer checks at the same size.
BACKLOG_BYTES = 1 << 16


class DirectWriter:
    """Writes binary messages to a connected aiohttp WebSocket with no task switch.

    aiohttp's `send_bytes` is a coroutine, so a frame pushed by a synchronous `push_frame`
    would have to wake a sender task, and at one frame per 32 ms that wake-up costs more than
    the send itself. Here the frame is built by the Rust core (masked, as a client's must be)
    and handed to the transport, which sends it at once or buffers it. Text and control
    messages still go through aiohttp; both write whole frames synchronously, so frames never
    interleave.
    """

    __slots__ = ("_transport", "_ws")

    def __init__(self, transport: asyncio.Transport, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._transport = transport
        self._ws = ws

    @classmethod
    def of(cls, ws: aiohttp.ClientWebSocketResponse) -> DirectWriter | None:
        """A writer for `ws`, or None when its transport cannot be reached or frames must be
        compressed (then every frame takes the sender task's path)."""
        # aiohttp has no public accessor for the transport; the tests check that this finds it.
        transport = getattr(getattr(ws, "_writer", None), "transport", None)
        if not isinstance(transport, asyncio.Transport) or ws.compress:
            return None
        return cls(transport, ws)

    def ready(self) -> bool:
        """Whether a frame written now goes out without growing a backlog."""
        transport = self._transport
        return (
            not self._ws.closed
            and not transport.is_closing()
            and transport.get_write_buffer_size() <= BACKLOG_BYTES
        )

    def write(self, payload: bytes) -> None:
        self._transport.write(_native.websocket_binary_frame(payload))
