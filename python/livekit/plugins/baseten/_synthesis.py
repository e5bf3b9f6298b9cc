# SPDX-License-Identifier: Apache-2.0

"""What every WebSocket synthesis shares: a sender task, a receiver task, and a deadline that
starts only once the text has ended (before that, the LLM sets the pace of the text)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

from livekit.agents import APITimeoutError


class Turn(Protocol):
    """The clock of one synthesis, as its sender and receiver keep it."""

    ended_at: float | None  # when the end of the text went out (monotonic)
    last_message_at: float  # when the server last sent anything (monotonic)


async def supervise(
    turn: Turn,
    sender: asyncio.Task[bool],
    receiver: asyncio.Task[None],
    *,
    timeout: float,
    server: str,
    api_error: Callable[[BaseException], BaseException] = lambda e: e,
) -> bool:
    """Waits for the synthesis; returns whether there was text (and so a segment). Once the
    end of the text is out, the server must keep sending, or close, within `timeout`; a task's
    failure is raised as `api_error` makes it."""
    pending: set[asyncio.Task[Any]] = {sender, receiver}
    while True:
        wait = None
        if turn.ended_at is not None:
            deadline = max(turn.ended_at, turn.last_message_at) + timeout
            wait = max(deadline - time.monotonic(), 0.0)
        done, pending = await asyncio.wait(
            pending, timeout=wait, return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            if (error := task.exception()) is not None:
                raise api_error(error)
        if sender in done and not sender.result():
            return False  # no text at all: nothing to synthesize, no segment
        if receiver in done:
            return True
        if not done and turn.ended_at is not None:
            if time.monotonic() >= max(turn.ended_at, turn.last_message_at) + timeout:
                raise APITimeoutError(
                    f"{server} sent nothing for {timeout:g}s after the end of the text"
                )
