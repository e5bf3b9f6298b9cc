# SPDX-License-Identifier: Apache-2.0

"""One voice turn through a LiveKit `AgentSession`, with no room: a recorded question goes in
as if from a microphone, the agent's spoken reply is collected, and LiveKit's own metrics give
the timings."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from livekit import rtc
from livekit.agents import Agent, AgentSession, llm, stt, tts
from livekit.agents.voice import io
from livekit.agents.voice.events import ConversationItemAddedEvent, ErrorEvent

FRAME_MS = 20
INSTRUCTIONS = "You are a helpful voice assistant. Answer in one or two short sentences."


@dataclass
class TurnResult:
    transcript: str = ""
    reply: str = ""
    audio: bytes = b""  # the reply, int16 mono
    sample_rate: int = 24000
    stt_final_latency_s: float | None = None  # end of speech -> final transcript
    llm_ttft_s: float | None = None
    tts_ttfb_s: float | None = None
    # The end of the question's audio -> the reply's first audio, as the user hears it.
    end_to_end_s: float | None = None
    errors: list[str] = field(default_factory=list)


class _Microphone(io.AudioInput):
    """The question at real-time pace, then silence, as a live microphone would go on."""

    def __init__(self, pcm: bytes, sample_rate: int) -> None:
        super().__init__(label="recorded question")
        self._pcm, self._rate = pcm, sample_rate
        self._step = sample_rate * FRAME_MS // 1000 * 2
        self._offset = 0
        self._next_at: float | None = None
        self.ended_at: float | None = None  # when the question's last frame was delivered

    async def __anext__(self) -> rtc.AudioFrame:
        loop = asyncio.get_running_loop()
        if self._next_at is None:
            self._next_at = loop.time()
        await asyncio.sleep(max(0.0, self._next_at - loop.time()))
        self._next_at += FRAME_MS / 1000
        chunk = self._pcm[self._offset : self._offset + self._step]
        self._offset += self._step
        if self.ended_at is None and self._offset >= len(self._pcm):
            self.ended_at = time.monotonic()
        chunk = chunk.ljust(self._step, b"\0")  # after the question: silence
        return rtc.AudioFrame(chunk, self._rate, 1, self._step // 2)


class _Speaker(io.AudioOutput):
    """Keeps the agent's speech; each segment counts as played as soon as it is flushed."""

    def __init__(self) -> None:
        super().__init__(
            label="collected reply", capabilities=io.AudioOutputCapabilities(pause=False)
        )
        self.pcm = bytearray()
        self.rate = 24000
        self._pushed = 0.0
        self.first_audio_at: float | None = None

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if self.first_audio_at is None:
            self.first_audio_at = time.monotonic()
        self.rate = frame.sample_rate
        self.pcm += frame.data.tobytes()
        self._pushed += frame.duration

    def flush(self) -> None:
        super().flush()
        self.on_playback_finished(playback_position=self._pushed, interrupted=False)
        self._pushed = 0.0

    def clear_buffer(self) -> None:
        if self._pushed:
            self.on_playback_finished(playback_position=self._pushed, interrupted=True)
            self._pushed = 0.0


async def run_turn(
    question: bytes,
    sample_rate: int,
    *,
    stt_engine: stt.STT[Any],
    llm_engine: llm.LLM[Any],
    tts_engine: tts.TTS[Any],
    timeout: float = 60.0,
) -> TurnResult:
    """Plays `question` (int16 mono) into an AgentSession and returns what it heard, what it
    answered and how long each stage took. Raises TimeoutError if no reply within `timeout`."""
    result = TurnResult()
    replied = asyncio.Event()
    # The STT decides when the user's turn ends (its END_OF_SPEECH), so no client-side VAD.
    session: AgentSession[None] = AgentSession(
        stt=stt_engine,
        llm=llm_engine,
        tts=tts_engine,
        turn_handling={
            "turn_detection": "stt",
            "interruption": {"enabled": False, "resume_false_interruption": False},
        },
    )
    speaker = _Speaker()

    @session.on("conversation_item_added")
    def _on_item(ev: ConversationItemAddedEvent) -> None:
        item = ev.item
        if not isinstance(item, llm.ChatMessage):
            return
        if item.role == "user":
            result.transcript = f"{result.transcript} {item.text_content or ''}".strip()
            result.stt_final_latency_s = item.metrics.get("transcription_delay")
        elif item.role == "assistant":
            result.reply = item.text_content or ""
            result.llm_ttft_s = item.metrics.get("llm_node_ttft")
            result.tts_ttfb_s = item.metrics.get("tts_node_ttfb")
            replied.set()

    @session.on("error")
    def _on_error(ev: ErrorEvent) -> None:
        result.errors.append(str(ev.error))

    microphone = _Microphone(question, sample_rate)
    session.input.audio = microphone
    session.output.audio = speaker
    await session.start(agent=Agent(instructions=INSTRUCTIONS), record=False)
    try:
        await asyncio.wait_for(replied.wait(), timeout)
    finally:
        await session.aclose()
    result.audio, result.sample_rate = bytes(speaker.pcm), speaker.rate
    if microphone.ended_at is not None and speaker.first_audio_at is not None:
        result.end_to_end_s = speaker.first_audio_at - microphone.ended_at
    return result
