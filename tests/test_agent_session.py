# SPDX-License-Identifier: Apache-2.0

"""The plugin inside a LiveKit `AgentSession`, as a voice agent runs it: real speech (eSpeak NG
through the local server's Orpheus) into the session's microphone in real time, our STT on a
Whisper or Qwen3-ASR server that transcribes exactly (tests/fake_whisper.py,
tests/fake_qwen3_asr.py, listening mode), our TTS (Orpheus or Qwen3-TTS) and LLM on the local
server. Turns ended by the STT and by the VAD, an interruption while the agent
speaks, an agent handoff (a new STT stream with a large `start_time_offset`), an STT
reconnection in the middle of a turn, a ten-minute session, and Qwen3-TTS replies whose
transcripts are the TTS's word alignment; on Whisper with Orpheus and on Qwen3-ASR with
Qwen3-TTS. What is checked is what LiveKit
computes from the plugin's events: each user turn once, with every word, ending on the wall
clock when its audio did."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Literal

import aiohttp
import pytest
from livekit import rtc
from livekit.agents import NOT_GIVEN, Agent, ModelSettings, stt
from livekit.agents.types import TimedString
from livekit.agents.voice import AgentSession
from livekit.plugins import baseten, silero
from livekit.plugins.baseten.local import LocalServer
from livekit.plugins.baseten.models import STTModels

from .agent_harness import (
    Clock,
    Cue,
    Microphone,
    Part,
    Record,
    Silence,
    Speaker,
    Speech,
    Transcript,
)
from .fake_qwen3_asr import ENDPOINTING_S as QWEN3_ENDPOINTING_S
from .fake_qwen3_asr import FakeQwen3AsrServer
from .fake_tcp import CuttableProxy
from .fake_whisper import ENDPOINTING_S as WHISPER_ENDPOINTING_S
from .fake_whisper import FakeWhisperServer

pytestmark = [pytest.mark.slow, pytest.mark.local, pytest.mark.xdist_group("realtime")]

RATE = 24000
# How far LiveKit's idea of when the user stopped speaking may be from when the audio did.
TOLERANCE_S = 0.3
# Real-time silence after a fast-forward, before the next words. LiveKit's VAD dates speech by
# the wall clock when it processes it: on a busy machine it may still be working through the
# fast-forwarded audio when the words come, and would date them seconds late (after the STT's
# end of the same words: LiveKit then drops the turn's timing). A pause lets it catch up.
CATCH_UP_S = 2.0
UTTERANCES = [  # of clearly different lengths: the Whisper server tells them apart by length
    "Please send the report.",
    "The meeting has been moved to Thursday afternoon.",
    "Can you book a table for two people tonight at the Italian place?",
    "Turn off the lights in the kitchen, lock the back door and set the alarm before you leave.",
]


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    async with LocalServer() as s:
        yield s


@pytest.fixture
async def whisper() -> AsyncIterator[FakeWhisperServer]:
    s = await FakeWhisperServer().start()
    yield s
    await s.close()


@pytest.fixture
async def qwen3() -> AsyncIterator[FakeQwen3AsrServer]:
    s = await FakeQwen3AsrServer().start()
    yield s
    await s.close()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(time, "time", c.time)
    return c


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


async def utterances(
    server: LocalServer,
    http: aiohttp.ClientSession,
    whisper: FakeWhisperServer,
    qwen3: FakeQwen3AsrServer | None = None,
) -> list[Speech]:
    """Each utterance spoken by eSpeak; the STT servers learn to tell them by length."""
    voice = baseten.TTS(api_key="local", model_endpoint=server.tts_websocket_url, http_session=http)
    frames = await asyncio.gather(*(voice.synthesize(text).collect() for text in UTTERANCES))
    speech = [Speech(text, f.data.tobytes()) for text, f in zip(UTTERANCES, frames, strict=True)]
    lengths = [len(s.pcm) / 2 / RATE for s in speech]
    assert all(abs(a - b) > 0.2 for a, b in itertools.combinations(lengths, 2)), lengths
    whisper.behaviour.utterances = list(zip(lengths, UTTERANCES, strict=True))
    if qwen3 is not None:
        qwen3.behaviour.utterances = whisper.behaviour.utterances
    return speech


class Listener(Agent):
    def __init__(self, name: str, record: Record, stt_engine: baseten.STT | None = None) -> None:
        super().__init__(
            instructions=f"You are {name}. Repeat what you hear.",
            stt=stt_engine if stt_engine is not None else NOT_GIVEN,
        )
        self._record = record

    async def stt_node(
        self, audio: AsyncIterable[rtc.AudioFrame], model_settings: ModelSettings
    ) -> AsyncIterable[stt.SpeechEvent | str]:
        """LiveKit's own stt_node, noting each final's end time as the plugin gave it."""
        async for ev in Agent.default.stt_node(self, audio, model_settings):
            if isinstance(ev, stt.SpeechEvent) and ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT:
                self._record.final_ends.append(ev.alternatives[0].end_time)
            yield ev


def qwen3_voice(server: LocalServer, http: aiohttp.ClientSession) -> baseten.TTS:
    """Qwen3-TTS on the local server, with the word alignment LiveKit's transcript syncs to."""
    return baseten.TTS(
        model="qwen3-tts",
        api_key="local",
        model_endpoint=server.qwen3_tts_url,
        http_session=http,
        voice="leo",
        word_timestamps=True,
    )


# Each scenario on each protocol pair.
BACKENDS = pytest.mark.parametrize(
    "stt_model, tts_model", [("whisper", "orpheus"), ("qwen3-asr", "qwen3-tts")]
)


def voice_for(
    tts_model: str, server: LocalServer, http: aiohttp.ClientSession
) -> tuple[baseten.TTS, Transcript | None]:
    """The agent's TTS on the local server; for Qwen3-TTS, also the transcript output its word
    alignment goes to."""
    if tts_model == "qwen3-tts":
        return qwen3_voice(server, http), Transcript()
    voice = baseten.TTS(api_key="local", model_endpoint=server.tts_websocket_url, http_session=http)
    return voice, None


async def run_session(
    script: list[Part],
    *,
    server: LocalServer,
    http: aiohttp.ClientSession,
    clock: Clock,
    make_stt: Callable[[], baseten.STT],
    turn_detection: Literal["stt", "vad"],
    turns: int,
    cues: dict[str, Callable[[], object]] | None = None,
    tts_model: str = "orpheus",
) -> tuple[Record, Microphone, Speaker, Transcript | None]:
    """Plays `script` into a session until the microphone has played it all and the agent has
    answered `turns` user turns. With Qwen3-TTS, the session uses the TTS's aligned
    transcript, returned last."""
    voice, transcript = voice_for(tts_model, server, http)
    session: AgentSession[None] = AgentSession(
        stt=make_stt(),
        llm=baseten.LLM(api_key="local", base_url=server.llm_base_url, model="local-stand-in"),
        tts=voice,
        use_tts_aligned_transcript=transcript is not None,
        vad=silero.VAD.load(),
        # No echo here to cancel: the user is heard (and may interrupt) from the agent's first
        # word, as on a phone line.
        aec_warmup_duration=None,
        turn_handling={
            "turn_detection": turn_detection,
            "interruption": {"mode": "vad", "resume_false_interruption": False},
        },
    )
    record = Record()
    record.attach(session)
    # The "handoff" cue hands the session to a second agent with an STT of its own (same
    # endpoint, same options): its stt_node opens a new stream, as LiveKit sets it up.
    second = Listener("the second agent", record, stt_engine=make_stt())
    actions: dict[str, Callable[[], object]] = {"handoff": lambda: session.update_agent(second)}
    actions.update(cues or {})
    microphone, speaker = Microphone(script, RATE, clock, actions, record.progress), Speaker()
    session.input.audio = microphone
    session.output.audio = speaker
    if transcript is not None:
        session.output.transcription = transcript
    try:
        await session.start(agent=Listener("the first agent", record), record=False)

        def done() -> bool:
            return microphone.finished.is_set() and len(record.agent_replies) >= turns

        await record.progress.until(done, timeout=120)
    finally:
        await session.aclose()
        await voice.aclose()
    return record, microphone, speaker, transcript


def assert_turns(
    record: Record,
    microphone: Microphone,
    handed_over: int | None = None,
    endpointing_s: float = WHISPER_ENDPOINTING_S,
) -> None:
    """Each utterance became one user turn, with every word, and LiveKit places its end on the
    wall clock where the audio ended.

    With STT turn detection, an agent handed over to (from turn `handed_over` on) gets no input
    anchor of its own in LiveKit 1.8.9: it dates the user's stop by the final's arrival, the
    server's endpointing silence (`endpointing_s`) after the audio. For those turns the plugin's
    own end time, on the anchor LiveKit used before the handoff, must land within the tolerance
    instead."""
    said = [turn.text for turn in record.user_turns]
    assert [words(t) for t in said] == [words(s.text) for s in microphone.spoken], said
    first = record.user_turns[0].stopped_speaking_at
    assert first is not None
    anchor = first - record.final_ends[0]
    for i, (turn, spoken) in enumerate(zip(record.user_turns, microphone.spoken, strict=True)):
        assert turn.stopped_speaking_at is not None, turn
        late = turn.stopped_speaking_at - spoken.ended_at
        if handed_over is not None and i >= handed_over:
            assert abs(anchor + record.final_ends[-1] - spoken.ended_at) <= TOLERANCE_S, spoken
            assert 0 <= late <= TOLERANCE_S + endpointing_s, (turn, spoken)
        else:
            assert abs(late) <= TOLERANCE_S, (turn, spoken)


def assert_aligned(transcript: Transcript, record: Record) -> None:
    """Each reply's transcript is the TTS's words, each timed on the reply's audio, in order
    (an interrupted reply as far as the TTS got)."""
    replies = [s for s in transcript.segments if s]
    assert len(replies) == len(record.agent_replies), transcript.segments
    for pieces, reply, said in zip(replies, record.agent_replies, UTTERANCES, strict=False):
        timed = [p for p in pieces if isinstance(p, TimedString)]
        assert timed == pieces and words("".join(timed)) == words(reply)
        assert words(f"You said: {said}")[: len(timed)] == words(reply)
        starts = [float(w.start_time) for w in timed]  # type: ignore[arg-type]
        ends = [float(w.end_time) for w in timed]  # type: ignore[arg-type]
        assert starts == sorted(starts) and starts[0] == 0.0
        assert all(s <= e for s, e in zip(starts, ends, strict=True))


@BACKENDS
async def test_stt_turns_over_ten_minutes_with_an_interruption_a_handoff_and_a_reconnect(
    server: LocalServer,
    whisper: FakeWhisperServer,
    qwen3: FakeQwen3AsrServer,
    http: aiohttp.ClientSession,
    clock: Clock,
    stt_model: STTModels,
    tts_model: str,
) -> None:
    u1, u2, u3, u4 = await utterances(server, http, whisper, qwen3)
    asr = qwen3 if stt_model == "qwen3-asr" else whisper
    proxy = await CuttableProxy(int(asr.url.split(":")[2].split("/")[0])).start()

    def engine() -> baseten.STT:
        url = proxy.url(asr.url)
        return baseten.STT(model=stt_model, api_key="local", model_endpoint=url, http_session=http)

    half = len(u3.pcm) // 4 * 2
    script: list[Part] = [
        Silence(1.0),
        u1,
        Silence(1.8),  # the agent starts its reply...
        u2,  # ...and is interrupted by the next question
        Silence(2.5),
        Silence(270.0, fast=True),
        Silence(CATCH_UP_S),
        Speech(u3.text, u3.pcm[:half]),
        Cue("cut"),  # the STT connection dies mid-sentence
        Speech(u3.text, u3.pcm[half:], continues=True),
        Silence(2.5),
        # A new agent: a new STT stream, four and a half minutes into the input. Handed over at
        # real-time pace, as in a call: LiveKit dates the new stream's start by the wall clock
        # when it opens, so audio still queued from a fast-forward would shift it.
        Cue("handoff"),
        Silence(1.5),
        Silence(330.0, fast=True),
        Silence(CATCH_UP_S),
        u4,
        Silence(2.0),
    ]
    try:
        record, microphone, speaker, transcript = await run_session(
            script,
            server=server,
            http=http,
            clock=clock,
            make_stt=engine,
            turn_detection="stt",
            turns=4,
            cues={"cut": proxy.cut},
            tts_model=tts_model,
        )
    finally:
        await proxy.close()
    assert proxy.cuts == 1 and len(asr.sessions) == 3  # the cut, then the handoff
    assert speaker.interruptions >= 1
    endpointing = QWEN3_ENDPOINTING_S if stt_model == "qwen3-asr" else WHISPER_ENDPOINTING_S
    assert_turns(record, microphone, handed_over=3, endpointing_s=endpointing)
    assert microphone.spoken[-1].ended_at - microphone.spoken[0].started_at >= 600
    assert [e for e in record.errors if "Baseten" not in e] == []
    if transcript is not None:
        assert_aligned(transcript, record)


@BACKENDS
async def test_vad_turns_with_a_handoff(
    server: LocalServer,
    whisper: FakeWhisperServer,
    qwen3: FakeQwen3AsrServer,
    http: aiohttp.ClientSession,
    clock: Clock,
    stt_model: STTModels,
    tts_model: str,
) -> None:
    u1, u2, *_ = await utterances(server, http, whisper, qwen3)
    url = qwen3.url if stt_model == "qwen3-asr" else whisper.url

    def engine() -> baseten.STT:
        return baseten.STT(model=stt_model, api_key="local", model_endpoint=url, http_session=http)

    script: list[Part] = [
        Silence(1.0),
        u1,
        Silence(2.5),
        Cue("handoff"),
        Silence(1.5),
        Silence(60.0, fast=True),
        Silence(CATCH_UP_S),
        u2,
        Silence(2.0),
    ]
    record, microphone, _, transcript = await run_session(
        script,
        server=server,
        http=http,
        clock=clock,
        make_stt=engine,
        turn_detection="vad",
        turns=2,
        tts_model=tts_model,
    )
    assert_turns(record, microphone)
    assert record.errors == []
    if transcript is not None:
        assert_aligned(transcript, record)


async def test_qwen3_tts_replies_with_transcripts_aligned_word_by_word_across_an_interruption(
    server: LocalServer, whisper: FakeWhisperServer, http: aiohttp.ClientSession, clock: Clock
) -> None:
    u1, u2, *_ = await utterances(server, http, whisper)
    record, microphone, speaker, transcript = await run_session(
        # The first reply is interrupted by the second question.
        [Silence(1.0), u1, Silence(1.8), u2, Silence(2.5)],
        server=server,
        http=http,
        clock=clock,
        make_stt=lambda: baseten.STT(
            api_key="local", model_endpoint=whisper.url, http_session=http
        ),
        turn_detection="vad",
        turns=2,
        tts_model="qwen3-tts",
    )
    assert record.errors == []
    assert speaker.interruptions >= 1
    assert_turns(record, microphone)
    assert len(record.agent_replies) == 2 and transcript is not None
    assert_aligned(transcript, record)
    assert words(record.agent_replies[1]) == words(f"You said: {UTTERANCES[1]}")
