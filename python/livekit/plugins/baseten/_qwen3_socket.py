# SPDX-License-Identifier: Apache-2.0

"""The Qwen3-TTS WebSocket, and the one a TTS keeps warm between syntheses.

A Qwen3-TTS session config is sticky for the socket's life, and a fresh socket costs a
handshake plus a config before the first audio, so each TTS parks its socket for the next
synthesis. The server drops a socket that sends nothing for 30 s (and one that sends no
`session.config` within 10 s of connecting: ours send it at once); a parked socket is kept
inside that limit with an empty `input.done` (answered by `session.done`), and given up
before it when a keepalive fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from typing import Any

import aiohttp
from livekit.agents import utils

from .log import logger

if sys.version_info >= (3, 11):
    from asyncio import timeout as deadline
else:  # aiohttp depends on async-timeout before 3.11
    from async_timeout import timeout as deadline

# Below the server's 30 s idle limit, so a socket is dropped here before the server drops it
# under a synthesis.
IDLE_TTL_S = 25.0
KEEPALIVE_INTERVAL_S = 15.0
KEEPALIVE_TIMEOUT_S = 3.0

_ENDS = (
    aiohttp.WSMsgType.CLOSE,
    aiohttp.WSMsgType.CLOSING,
    aiohttp.WSMsgType.CLOSED,
    aiohttp.WSMsgType.ERROR,
)


class Qwen3Socket:
    """A connected socket and the task that reads it. Every message lands in `inbox`, also
    while the socket idles: a server that closed a parked socket is seen before the socket is
    used again, and nothing the server says is lost to a cancelled read."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.config: dict[str, Any] | None = None  # the session.config the server holds
        # The server's idle clocks run from the client's last message; the connect counts.
        self.last_sent = time.monotonic()
        self.pinging = False  # a keepalive is waiting for its session.done
        self.inbox: asyncio.Queue[aiohttp.WSMessage] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read(), name="baseten.TTS.qwen3.read")

    async def _read(self) -> None:
        try:
            while True:
                msg = await self.ws.receive()
                self.inbox.put_nowait(msg)
                if msg.type in _ENDS:
                    return
        except Exception as e:
            self.inbox.put_nowait(aiohttp.WSMessage(aiohttp.WSMsgType.ERROR, e, None))

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message))
        self.last_sent = time.monotonic()

    def reusable(self) -> bool:
        """Whether this idle socket can carry the next synthesis: open, silent while it
        idled (a message now would be a close, an error or a late reply), inside the
        server's idle limit and not in the middle of a keepalive."""
        return (
            not self.pinging
            and not self._reader.done()
            and self.inbox.empty()
            and not self.ws.closed
            and time.monotonic() - self.last_sent < IDLE_TTL_S
        )

    async def close(self, *, polite: bool) -> None:
        """Closes the socket. `polite` ends the server's session with `session.close` first;
        without it the close alone is what stops a server in the middle of generating."""
        try:
            if polite and not self.ws.closed:
                with contextlib.suppress(aiohttp.ClientError, ConnectionError):
                    await self.ws.send_str(json.dumps({"type": "session.close"}))
            await self.ws.close()  # waits briefly (the connect's ws_close) for the server
        finally:
            await utils.aio.cancel_and_wait(self._reader)


class WarmSlot:
    """At most one parked socket, kept alive while it waits for the next synthesis."""

    def __init__(self) -> None:
        self._parked: Qwen3Socket | None = None
        self._keeper: asyncio.Task[None] | None = None
        # Keepers and closes that finish by themselves; aclose() waits for them.
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def take(self) -> Qwen3Socket | None:
        """The parked socket if it can carry a synthesis, else None (and it is closed)."""
        sock, self._parked = self._parked, None
        if sock is None:
            return None
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            # A keeper only closes a socket after unparking it itself: cancelling it here
            # never interrupts a close.
            await utils.aio.cancel_and_wait(keeper)
        if sock.reusable():
            return sock
        logger.debug("Qwen3-TTS: the parked socket is stale or was closed; dialling")
        self.spawn(sock.close(polite=False))
        return None

    def ready(self) -> bool:
        """Whether a socket is parked, or none can be (the slot is closed)."""
        return self._closed or self._parked is not None

    def park(self, sock: Qwen3Socket) -> bool:
        """Parks `sock` for the next synthesis; False when the slot is taken or closed (the
        caller then closes `sock`)."""
        if self._closed or self._parked is not None:
            return False
        self._parked = sock
        self._keeper = self.spawn(self._keep(sock))
        return True

    async def aclose(self) -> None:
        self._closed = True
        sock, self._parked = self._parked, None
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            await utils.aio.cancel_and_wait(keeper)
        if sock is not None:
            # A socket cut off in the middle of a keepalive has no session to end politely.
            await sock.close(polite=not sock.pinging)
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def spawn(self, job: Any) -> asyncio.Task[None]:
        """Runs `job` (a close, a keepalive, a prewarm) in a task aclose() waits for."""
        task: asyncio.Task[None] = asyncio.create_task(job, name="baseten.TTS.qwen3.warm")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _keep(self, sock: Qwen3Socket) -> None:
        """Keeps `sock` inside the server's idle limit while it is parked; when that fails,
        unparks and closes it."""
        while await self._keepalive(sock):
            pass
        if self._parked is sock:
            self._parked, self._keeper = None, None
        await sock.close(polite=False)

    async def _keepalive(self, sock: Qwen3Socket) -> bool:
        """Waits for the next keepalive and sends it; whether the socket is still good."""
        await asyncio.sleep(max(sock.last_sent + KEEPALIVE_INTERVAL_S - time.monotonic(), 0))
        if not sock.reusable():
            return False
        sock.pinging = True
        try:
            await sock.send({"type": "input.done"})
            async with deadline(KEEPALIVE_TIMEOUT_S):
                while True:
                    msg = await sock.inbox.get()
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        return False
                    event = json.loads(msg.data)
                    if isinstance(event, dict) and event.get("type") == "session.done":
                        break
                    if isinstance(event, dict) and event.get("type") == "error":
                        logger.warning("Qwen3-TTS refused a keepalive: %s", event.get("message"))
                        return False
        except (asyncio.TimeoutError, aiohttp.ClientError, ConnectionError, ValueError) as e:
            logger.debug("Qwen3-TTS keepalive failed (%s); dropping the parked socket", e)
            return False
        sock.pinging = False
        return True
