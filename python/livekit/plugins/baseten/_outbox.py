# SPDX-License-Identifier: Apache-2.0

"""Wire frames waiting for a socket."""

from __future__ import annotations

import asyncio
from collections import deque

from .log import logger


class Outbox:
    """Audio frames ready to send, oldest first.

    A frame leaves only once a socket has taken it, so audio pushed while a connection is down
    or being replaced goes out on the next connection; frames a dead connection took but never
    got transcribed are put back with `requeue`. The outbox holds at most `max_frames`;
    past that the oldest frames are dropped (a stream that cannot reach the server for that
    long is behind real time anyway), and a warning says how much.
    """

    def __init__(self, max_frames: int) -> None:
        self._frames: deque[bytes] = deque()
        self._max_frames = max_frames
        self._changed = asyncio.Event()
        self._dropping = False
        self.dropped_frames = 0

    def __len__(self) -> int:
        return len(self._frames)

    def extend(self, frames: list[bytes]) -> None:
        if not frames:
            return
        self._frames.extend(frames)
        excess = len(self._frames) - self._max_frames
        if excess > 0:
            for _ in range(excess):
                self._frames.popleft()
            if not self._dropping:
                logger.warning(
                    "the connection to Baseten is behind by more than %d audio frames: "
                    "dropping the oldest",
                    self._max_frames,
                )
            self._dropping = True
            self.dropped_frames += excess
        self._changed.set()

    def requeue(self, frames: list[bytes]) -> None:
        """Puts frames back at the front, oldest first (a connection died before they were
        transcribed). The bound still holds: the oldest go first."""
        self._frames.extendleft(reversed(frames))
        excess = len(self._frames) - self._max_frames
        for _ in range(max(excess, 0)):
            self._frames.popleft()
        self.dropped_frames += max(excess, 0)
        self._changed.set()

    def take(self) -> bytes | None:
        """The oldest frame, out of the outbox (requeue it if it could not be sent), so that
        frames dropped while it is being sent can never be it."""
        if not self._frames:
            self._dropping = False
            return None
        return self._frames.popleft()

    def notify(self) -> None:
        """Wakes the sender without a frame (input ended, options changed)."""
        self._changed.set()

    async def wait(self, timeout: float) -> None:
        """Waits until something changes, or `timeout` seconds."""
        # Not asyncio.wait_for: before Python 3.12 it swallows a cancellation that arrives
        # as the event is set, and the sender would outlive its connection.
        if not self._changed.is_set():
            timer = asyncio.get_running_loop().call_later(timeout, self._changed.set)
            try:
                await self._changed.wait()
            finally:
                timer.cancel()
        self._changed.clear()
