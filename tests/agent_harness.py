# SPDX-License-Identifier: Apache-2.0

"""A LiveKit `AgentSession` driven the way a room drives it, with no room: a microphone that
plays a script of speech and silence in real time (long silences fast-forwarded, the wall
clock skipping ahead with them), a speaker that plays the agent's audio in real time and can
be interrupted, and a record of what LiveKit made of each user turn."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from livekit import rtc
from livekit.agents import llm
from livekit.agents.voice import AgentSession, io
from livekit.agents.voice.events import ConversationItemAddedEvent, ErrorEvent

from .fake_tcp import Progress

FRAME_S = 0.02


class Clock:
    """The wall clock (`time.time`) for the whole process, able to skip ahead: a silence of
    minutes is played as fast as the session takes it, and the clock moves on by its length,
    so every wall-clock time LiveKit computes stays on the audio's timeline."""

    def __init__(self) -> None:
        self.real = time.time
        self.skipped = 0.0

    def time(self) -> float:
        return self.real() + self.skipped


@dataclass
class Speech:
    """An utterance: `pcm` (int16 mono) and the words it says; with `continues`, the rest of
    the one before (a cue between them acts in the middle of a sentence)."""

    text: str
    pcm: bytes
    continues: bool = False


@dataclass
class Silence:
    seconds: float
    fast: bool = False  # played as fast as it is taken, the clock skipping ahead


# A fast-forwarded silence comes in frames this long (ten times fewer for the session to take),
# this many times faster than real time: as fast as the session's VAD keeps up with, so that
# it is not still catching up when the next words come.
FAST_FRAME_S = 0.2
FAST_SPEEDUP = 100


@dataclass
class Cue:
    """Calls the session's action of this name when the microphone reaches it."""

    name: str


Part = Speech | Silence | Cue


@dataclass
class Spoken:
    text: str
    started_at: float  # wall clock, as the clock says, of the first sample
    ended_at: float = 0.0  # wall clock of the end of the last sample


class Microphone(io.AudioInput):
    """Plays `script` at real-time pace in 20 ms frames, then silence for as long as asked."""

    def __init__(
        self,
        script: list[Part],
        sample_rate: int,
        clock: Clock,
        cues: dict[str, Callable[[], object]],
        progress: Progress,
    ) -> None:
        super().__init__(label="scripted microphone")
        self._script = list(script)
        self._cues = cues
        self._progress = progress
        self._rate = sample_rate
        self._clock = clock
        self._step = round(sample_rate * FRAME_S) * 2
        self._pending = b""  # what is left of the current part
        self._part: Part | None = None
        self._next_at: float | None = None  # loop time of the next real-time frame
        self._fast_from: float | None = None  # clock time a fast-forwarded silence began
        self._fast_played = 0.0
        self.spoken: list[Spoken] = []
        self.finished = asyncio.Event()  # the whole script was played

    async def __anext__(self) -> rtc.AudioFrame:
        while not self._pending:
            if not self._script:
                self.finished.set()
                self._progress.notify()
                self._part = None
                self._pending = bytes(self._step)  # silence, forever
                break
            self._start(self._script.pop(0))
        part = self._part
        fast = isinstance(part, Silence) and part.fast
        step = self._step * round(FAST_FRAME_S / FRAME_S) if fast else self._step
        chunk, self._pending = self._pending[:step], self._pending[step:]
        chunk = chunk.ljust(self._step, b"\0")
        seconds = len(chunk) / 2 / self._rate
        late = 0.0
        if fast:
            # The clock shows exactly the audio played since the silence began, however long
            # the session takes to take it in.
            if self._fast_from is None:
                self._fast_from, self._fast_played = self._clock.time(), 0.0
            self._fast_played += seconds
            self._clock.skipped = self._fast_from + self._fast_played - self._clock.real()
            await asyncio.sleep(seconds / FAST_SPEEDUP)
            self._next_at = None
        else:
            self._fast_from = None
            late = await self._pace(seconds)
        if isinstance(part, Speech) and not self._pending:
            # When a real microphone would have captured the last sample: a busy event loop
            # hands the frame over late, but the audio ended on schedule.
            self.spoken[-1].ended_at = self._clock.time() - late
        return rtc.AudioFrame(chunk, self._rate, 1, len(chunk) // 2)

    def _start(self, part: Part) -> None:
        self._part = part
        if isinstance(part, Cue):
            self._cues[part.name]()
        elif isinstance(part, Speech):
            self._pending = part.pcm
            if not part.continues:
                self.spoken.append(Spoken(part.text, self._clock.time()))
        else:
            self._pending = bytes(round(part.seconds * self._rate) * 2)

    async def _pace(self, seconds: float) -> float:
        """Waits until this frame's audio has been captured; returns how late that finds us."""
        loop = asyncio.get_running_loop()
        if self._next_at is None:
            self._next_at = loop.time()
        self._next_at += seconds
        await asyncio.sleep(max(0.0, self._next_at - loop.time()))
        return max(0.0, loop.time() - self._next_at)


class Speaker(io.AudioOutput):
    """Plays the agent's audio in real time: a segment finishes when its audio has had time to
    play out, unless the session clears it first (an interruption)."""

    def __init__(self) -> None:
        super().__init__(label="speaker", capabilities=io.AudioOutputCapabilities(pause=False))
        self.played = 0.0  # seconds of agent audio played, in all
        self.interruptions = 0
        self._queued = 0.0  # seconds captured in the current segment
        self._started_at: float | None = None  # loop time the current segment began playing
        self._finish: asyncio.TimerHandle | None = None

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if self._started_at is None:
            self._started_at = asyncio.get_running_loop().time()
            self.on_playback_started(created_at=time.time())
        self._queued += frame.duration

    def flush(self) -> None:
        super().flush()
        if self._started_at is None:
            return
        loop = asyncio.get_running_loop()
        left = self._started_at + self._queued - loop.time()
        self._finish = loop.call_later(max(left, 0.0), self._finished, False)

    def clear_buffer(self) -> None:
        if self._started_at is not None:
            if self._finish is not None:
                self._finish.cancel()
            self._finished(True)

    def _finished(self, interrupted: bool) -> None:
        assert self._started_at is not None
        position = min(asyncio.get_running_loop().time() - self._started_at, self._queued)
        self.played += position
        self.interruptions += interrupted
        self._started_at, self._queued, self._finish = None, 0.0, None
        self.on_playback_finished(playback_position=position, interrupted=interrupted)


@dataclass
class UserTurn:
    text: str
    stopped_speaking_at: float | None
    started_speaking_at: float | None


@dataclass
class Record:
    """What the session said and did."""

    user_turns: list[UserTurn] = field(default_factory=list)
    agent_replies: list[str] = field(default_factory=list)
    final_ends: list[float] = field(default_factory=list)  # each final's end_time, as given
    errors: list[str] = field(default_factory=list)
    progress: Progress = field(default_factory=Progress)

    def attach(self, session: AgentSession[None]) -> None:
        @session.on("conversation_item_added")
        def _on_item(ev: ConversationItemAddedEvent) -> None:
            item = ev.item
            if not isinstance(item, llm.ChatMessage):
                return
            if item.role == "user":
                self.user_turns.append(
                    UserTurn(
                        item.text_content or "",
                        item.metrics.get("stopped_speaking_at"),
                        item.metrics.get("started_speaking_at"),
                    )
                )
            elif item.role == "assistant":
                self.agent_replies.append(item.text_content or "")
            self.progress.notify()

        @session.on("error")
        def _on_error(ev: ErrorEvent) -> None:
            self.errors.append(f"{type(ev.error).__name__}: {ev.error}")
            self.progress.notify()


class Transcript(io.TextOutput):
    """The agent's transcript as the session hands it out, piece by piece: with an aligned
    transcript, the TTS's timed words."""

    def __init__(self) -> None:
        super().__init__(label="transcript", next_in_chain=None)
        self.segments: list[list[str]] = [[]]  # one per reply, each the pieces in order

    async def capture_text(self, text: str) -> None:
        self.segments[-1].append(text)

    def flush(self) -> None:
        if self.segments[-1]:
            self.segments.append([])
