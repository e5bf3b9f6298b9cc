# SPDX-License-Identifier: Apache-2.0

"""Every wire frame of one speech stream, counted on one timeline: the stream's input audio."""

from __future__ import annotations

import math
from collections import deque

from .log import logger

# A final's end time is rounded by the server: a frame ending this close after it counts as
# covered.
_ROUNDING_S = 1e-6


class AudioLedger:
    """The audio a speech stream owes Baseten, and what became of it.

    Frame n (from 0, in push order) covers seconds [n * F, (n + 1) * F) of the stream's input,
    F being `frame_seconds`: that is the one timeline every figure here is on. A frame is kept
    from the moment it is pushed until a final transcript covers it (or the server says it
    finished), because the protocol has no acknowledgements: a connection that dies may have
    swallowed frames unread, and they go out again on the next one. The kept frames, oldest
    first, are those the live connection sent that no final covers yet, then those queued for
    a socket.

    At most `max_frames` are kept; past that the oldest go. A frame that was sent once can
    then no longer be resent (which matters only if its connection died unheard); one never
    sent is lost, with a warning and a count (`dropped_frames`).

    A connection's audio is one unbroken run of frames, so the server's time 0 is where the run
    began (`origin_s`) and its time s is input time `origin_s + s`. If queued frames are lost
    after the connection sent audio, its run would jump: the ledger then marks the connection
    `broken` and gives it no more frames, and the stream must reconnect.
    """

    __slots__ = (
        "_broken",
        "_dropping",
        "_first",
        "_frames",
        "_high",
        "_live",
        "_max_frames",
        "_next",
        "_origin",
        "_pushed",
        "_reported",
        "_skipped",
        "dropped_frames",
        "frame_seconds",
    )

    def __init__(self, *, max_frames: int, frame_seconds: float) -> None:
        if max_frames < 1:
            raise ValueError("max_frames must be at least 1")
        self._max_frames = max_frames
        self.frame_seconds = frame_seconds
        self._frames: deque[bytes] = deque()  # kept: indices first .. pushed - 1
        self._first = 0  # the oldest kept frame
        self._next = 0  # the next frame to send; before it, the live connection's unconfirmed
        self._pushed = 0  # frames pushed so far
        self._origin = 0  # the live connection's first frame (its server time 0)
        self._live = False
        self._broken = False
        self._high = 0  # with _skipped and _next, what was ever sent (see usage)
        self._skipped = 0  # frames lost before they were ever sent
        self._reported = 0  # frames already reported as usage
        self._dropping = False  # warned about the current run of losses
        self.dropped_frames = 0  # frames lost at the bound before they were ever sent

    # -- the input ---------------------------------------------------------------------------

    def push(self, frames: list[bytes]) -> None:
        """Queues `frames` (the stream's next audio) for a socket."""
        kept = self._frames
        kept.extend(frames)
        self._pushed += len(frames)
        excess = len(kept) - self._max_frames
        if excess > 0:
            if self._first + excess <= self._next:
                # The usual case, through any long silence (no finals): the oldest frames the
                # live connection sent stop being resendable. Inline: it happens every frame.
                self._first += excess
                while excess:
                    kept.popleft()
                    excess -= 1
            else:
                self._drop_oldest(excess)

    @property
    def queued(self) -> int:
        """Frames waiting for a socket."""
        return self._pushed - self._next

    @property
    def pushed(self) -> int:
        """Frames pushed so far: the index the next one will have."""
        return self._pushed

    @property
    def oldest(self) -> int:
        """The index of the oldest frame still owed: every one before it is settled."""
        return self._first

    @property
    def settled(self) -> bool:
        """Whether every frame pushed was sent and covered: nothing is owed to the server."""
        return self._first == self._pushed

    # -- connections -------------------------------------------------------------------------

    def open(self) -> None:
        """A new connection: it starts with the oldest frame no final covered."""
        self.close()
        self._live = True
        self._broken = False
        self._origin = self._next

    def close(self) -> None:
        """The connection is over: what it sent and no final covered is queued again."""
        self._high = max(self._high, self._next)
        self._next = self._first
        self._live = False

    def take(self) -> bytes | None:
        """The next frame for the live connection, or None (nothing queued, or `broken`)."""
        i = self._next
        if i == self._pushed or self._broken:
            if i == self._pushed:
                self._dropping = False  # caught up: a later loss is a new run
            return None
        self._next = i + 1
        return self._frames[i - self._first]

    @property
    def broken(self) -> bool:
        """Whether frames this connection still had to send were lost: its server's timeline
        can no longer match the input's, and it gets no more frames."""
        return self._broken

    @property
    def origin_s(self) -> float:
        """Where the live connection's audio began, in seconds of input: its server's time 0."""
        return self._origin * self.frame_seconds

    def input_time(self, seconds: float) -> float:
        """Where `seconds` of the live connection's audio lies in the stream's input."""
        return self._origin * self.frame_seconds + seconds

    @property
    def sent_s(self) -> float:
        """Seconds of audio the live connection was sent."""
        return (self._next - self._origin) * self.frame_seconds

    def confirm(self, seconds: float) -> None:
        """A final transcript ending at `seconds` of the live connection's audio covers it up
        to there: frame k of the connection (from 0) once `(k + 1) * F <= seconds` (give or
        take the server's rounding). Times that are not finite confirm nothing."""
        if not self._live or not math.isfinite(seconds):
            return
        # Counted at once rather than frame by frame (a final covers ~150 frames); the
        # division's estimate is then settled by the rule itself, so rounding cannot move a
        # frame either way.
        step, limit = self.frame_seconds, seconds + _ROUNDING_S
        covered = max(math.floor(limit / step), 0)
        while (covered + 1) * step <= limit:
            covered += 1
        while covered > 0 and covered * step > limit:
            covered -= 1
        self._forget_until(min(self._origin + covered, self._next))

    def confirm_until(self, index: int) -> None:
        """The server answered for every frame before `index` that the live connection sent
        (a reply to a commit that rode on frame `index - 1`)."""
        if self._live:
            self._forget_until(min(index, self._next))

    def sent_through(self, index: int) -> bool:
        """Whether the live connection was sent every frame before `index`."""
        return self._live and index <= self._next

    def confirm_all(self) -> None:
        """The server finished: everything the live connection sent is transcribed."""
        if self._live:
            self._forget_until(self._next)

    # -- usage -------------------------------------------------------------------------------

    @property
    def unreported_frames(self) -> int:
        """Frames sent for the first time since `take_usage` last counted them."""
        return max(self._high, self._next) - self._skipped - self._reported

    def take_usage(self, at_least: int = 1) -> int:
        """Frames sent for the first time since the last call, if there are `at_least`, and
        then counted as reported; else 0. A frame sent again is never counted again."""
        frames = self.unreported_frames
        if frames < at_least:
            return 0
        self._reported += frames
        return frames

    # -- internals ---------------------------------------------------------------------------

    def _forget_until(self, index: int) -> None:
        frames = self._frames
        for _ in range(index - self._first):
            frames.popleft()
        self._first = max(self._first, index)

    def _drop_oldest(self, count: int) -> None:
        for _ in range(count):
            self._frames.popleft()
        first = self._first + count
        self._first = first
        if first <= self._next:
            return  # only frames the live connection has sent
        # Queued frames went: some may have been sent before (kept to be resent, their
        # connection having died), the others never were, and only those are lost audio.
        never_sent = max(first - max(self._high, self._next), 0)
        self._skipped += never_sent
        if self._live and self._next > self._origin:
            self._broken = True
        else:
            self._origin = first  # nothing sent yet: the connection's audio starts later
        self._next = first
        self.dropped_frames += never_sent
        if never_sent and not self._dropping:
            self._dropping = True
            logger.warning(
                "the connection to Baseten is behind by more than %.0fs of audio: dropping the "
                "oldest",
                self._max_frames * self.frame_seconds,
            )
