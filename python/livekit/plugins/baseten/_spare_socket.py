# SPDX-License-Identifier: Apache-2.0

"""One WebSocket dialled ahead of need, so a stream starts on an open socket.

Orpheus speaks one utterance per socket and the server closes it afterwards, so sockets are
never reused; what can be saved is the handshake (one to three round trips across the
internet). A `SpareSocket` keeps at most one connected, unused socket: a stream acquires it
(or, when there is none, dials its own) and, for the TTS, a new spare is dialled at once.

While it waits, a spare is watched: anything the server sends an unused socket (a close, a
reset, data it should not have sent) means it is dead, and a socket idle for `MAX_IDLE_S` is
replaced anyway (an intermediary may have dropped it silently). aiohttp's heartbeat finds a
partition: a spare pings after `HEARTBEAT_S` without data from the server, and is dead when
no pong follows within half of it. The stream that takes a spare turns the heartbeat off: its
own deadlines (scaled by its `conn_options.timeout`) take over, as on a socket it dialled.

LiveKit's `utils.ConnectionPool` serves sockets that go back to the pool after use (Cartesia,
ElevenLabs); for sockets used once it would only prewarm the first, with no replacement and
no watch, hence this.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from livekit.agents import APIError

from ._private_api import stop_heartbeat
from .log import logger

if sys.version_info >= (3, 11):
    from asyncio import timeout as deadline
else:  # aiohttp depends on async-timeout before 3.11
    from async_timeout import timeout as deadline

# A spare older than this is closed and replaced: load balancers drop idle connections
# without telling either end, and a fresh socket costs one handshake in the background.
MAX_IDLE_S = 30.0
# A spare pings after this long without data from the server; no pong within half of it and
# it is dead. A partition is noticed within 1.5 x this on an idle spare.
HEARTBEAT_S = 5.0
# Spares that died unused, one after another, before dialling stops until the next acquire() or
# prewarm(): a server that closes every idle socket must not be redialled in a loop.
MAX_DEATHS = 3

# A spare's handshake may take this long (LiveKit's default connect timeout); a stream that
# waits for it waits no longer than its own.
DIAL_TIMEOUT_S = 10.0

# dial(timeout, heartbeat): opens a socket (with aiohttp's heartbeat, if given).
Dial = Callable[[float, float | None], Awaitable[aiohttp.ClientWebSocketResponse]]


@dataclass(frozen=True)
class Acquired:
    """A socket for one stream, and how it was had (for LiveKit's TTS/STT metrics)."""

    ws: aiohttp.ClientWebSocketResponse
    reused: bool  # a spare dialled ahead, as LiveKit's `connection_reused`
    acquire_time: float  # seconds the stream waited for it


class SpareSocket:
    """At most one open, unused WebSocket to one endpoint (see the module's docstring).

    Nothing is dialled ahead until `prewarm()`. After that, with `refill`, a new spare is
    dialled whenever one is taken (the TTS: a socket per utterance); without, the spare is
    dialled once per `prewarm()` (the STT: a stream keeps its socket for the conversation).
    `dial` opens a socket or raises LiveKit's API errors.
    """

    def __init__(self, dial: Dial, *, refill: bool, max_idle_s: float = MAX_IDLE_S) -> None:
        self._dial = dial
        self._refill = refill
        self._max_idle_s = max_idle_s
        self._armed = False  # prewarm() was called: keep a spare from now on (with refill)
        self._keeper: asyncio.Task[None] | None = None
        self._spare: aiohttp.ClientWebSocketResponse | None = None
        self._dialled = asyncio.Event()  # the keeper's dial has ended, well or not
        self._deaths = 0
        self._closed = False

    def prewarm(self) -> None:
        """Dials a spare in the background, unless one is open or being dialled. Needs a
        running event loop."""
        self._armed = True
        self._deaths = 0
        self._start()

    async def acquire(self, timeout: float) -> Acquired:
        """The spare if one is open, else a socket dialled now, within `timeout` (a dial in
        progress is waited for up to that long); the dial's errors are raised as they are."""
        start = time.perf_counter()
        ws = await self._take(timeout)
        reused = ws is not None
        if ws is None:
            ws = await self._dial(timeout, None)
        if self._refill and self._armed:
            self._deaths = 0
            self._start()  # a spare for the next stream, dialled while this one runs
        return Acquired(ws=ws, reused=reused, acquire_time=time.perf_counter() - start)

    async def aclose(self) -> None:
        """Closes the spare; no new one is dialled."""
        self._closed = True
        ws, self._spare = self._spare, None
        if self._keeper is not None:
            await _stop(self._keeper)
        if ws is not None:
            await ws.close()

    def _start(self) -> None:
        if self._closed or (self._keeper is not None and not self._keeper.done()):
            return
        self._dialled.clear()
        self._keeper = asyncio.create_task(self._keep(), name="baseten.SpareSocket")

    async def _take(self, timeout: float) -> aiohttp.ClientWebSocketResponse | None:
        keeper = self._keeper
        if keeper is None or keeper.done():
            return None
        if self._spare is None:
            # Being dialled: waiting costs less than starting a handshake of our own.
            dialled = asyncio.ensure_future(self._dialled.wait())
            try:
                await asyncio.wait(
                    {keeper, dialled}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                dialled.cancel()
        ws, self._spare = self._spare, None
        if ws is None:
            return None  # the dial failed, or the spare died meanwhile
        # Claimed: the keeper, stopped in its receive(), leaves the socket open. A message
        # that arrived in the same instant stays queued in the socket for its new owner.
        try:
            await _stop(keeper)
        except asyncio.CancelledError:
            await ws.close()  # the caller is gone: the socket is nobody's
            raise
        stop_heartbeat(ws)
        return ws

    async def _keep(self) -> None:
        """Dials a spare, then watches it until it is taken, dies or grows old."""
        try:
            ws = await self._dial(DIAL_TIMEOUT_S, HEARTBEAT_S)
        except APIError as e:
            # What will not go away (a closed session as a job ends, a refused key) is for the
            # stream that dials next to report; a network failure may explain a slow start.
            level = logging.WARNING if e.retryable else logging.DEBUG
            logger.log(level, "could not dial a spare Baseten connection: %s", e)
            self._dialled.set()
            return
        self._spare = ws
        self._dialled.set()
        expired = False
        try:
            async with deadline(self._max_idle_s):
                msg = await ws.receive()
            logger.debug("a spare Baseten connection ended unused: %s", msg.type.name)
        except asyncio.TimeoutError:
            expired = True
        finally:
            if self._spare is ws:  # not taken: ours to close
                self._spare = None
                await asyncio.shield(ws.close())
        self._deaths = 0 if expired else self._deaths + 1
        if self._deaths < MAX_DEATHS and not self._closed:
            self._keeper = None
            self._start()


async def _stop(task: asyncio.Task[None]) -> None:
    """Cancels `task` and waits for it, without taking on its cancellation."""
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.debug("spare connection keeper ended with %r", error)
