# SPDX-License-Identifier: Apache-2.0

"""Audio frames from a stream's ledger onto one connection's socket."""

from __future__ import annotations

import asyncio

import aiohttp

from ._audio_ledger import AudioLedger
from ._private_api import wait_until_writable, websocket_flow_control, websocket_transport


class FrameWriter:
    """Writes the ledger's queued frames to a connected WebSocket, in order, with no task
    switch.

    The Rust pipeline makes each frame a whole masked WebSocket message, so a frame goes
    straight to the transport: from `push_frame` itself while the socket keeps up, from the
    sender task (which waits for the transport to drain, as aiohttp's own writer does) when it
    pushes back. Both write synchronously, in the ledger's order, so frames can never overtake
    one another, nor interleave with the text messages aiohttp writes (also whole, at once).
    """

    __slots__ = ("_flow", "_ledger", "_transport", "_ws")

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, ledger: AudioLedger) -> None:
        self._ws = ws
        self._ledger = ledger
        self._transport = websocket_transport(ws)
        self._flow = websocket_flow_control(ws)

    def pump(self) -> bool:
        """Writes queued frames until there are none or the socket pushes back. Returns whether
        the sender task has work: frames left, a connection that is closing or `broken`."""
        if self._ws.closed or self._transport.is_closing():
            return True
        flow, write, take = self._flow, self._transport.write, self._ledger.take
        # Paused: the transport's buffer is full, and the sender waits for it to drain.
        while not flow.writing_paused:
            frame = take()
            if frame is None:
                return self._ledger.broken
            write(frame)
        return True

    async def writable(self) -> None:
        """Returns once the socket takes frames again; raises ConnectionResetError if it is
        closing."""
        if self._ws.closed or self._transport.is_closing():
            raise ConnectionResetError("the connection is closing")
        if self._flow.writing_paused:
            await wait_until_writable(self._flow)


class Wakeup:
    """Wakes a waiting task when something changes, or after a timeout."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> None:
        """Waits until `set()` (since the last wait returned), or `timeout` seconds."""
        # Not asyncio.wait_for: before Python 3.12 it swallows a cancellation that arrives
        # as the event is set, and the waiting task would outlive its connection.
        event = self._event
        if not event.is_set():
            timer = asyncio.get_running_loop().call_later(timeout, event.set)
            try:
                await event.wait()
            finally:
                timer.cancel()
        event.clear()
