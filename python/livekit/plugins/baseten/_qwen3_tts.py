# SPDX-License-Identifier: Apache-2.0

"""Qwen3-TTS on Baseten (`TTS(model="qwen3-tts")`), over one WebSocket kept warm per TTS.

A synthesis: `session.config` (only when it differs from what the socket's session holds),
`input.text` per token, one `input.done`; the server answers each sentence with `audio.start`,
binary 24 kHz PCM and `audio.done` (with the sentence's word alignment when asked), then
`session.done`. The protocol is described in docs/protocols.md.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import aiohttp
from livekit.agents import (
    APIConnectionError,
    APIConnectOptions,
    APIError,
    APIStatusError,
    tts,
    utils,
)
from livekit.agents.types import NotGivenOr, TimedString

from ._options import replace_given
from ._qwen3_socket import Qwen3Socket, WarmSlot
from ._synthesis import supervise
from ._websocket import Dialer
from .log import logger

SAMPLE_RATE = 24000
NUM_CHANNELS = 1
BYTES_PER_SECOND = SAMPLE_RATE * NUM_CHANNELS * 2
# Audio comes in chunks and alignments are short; the limit only stops a runaway message.
MAX_MESSAGE_BYTES = 16 << 20
TASK_TYPES = ("Base", "CustomVoice", "VoiceDesign")
# session.config keys the plugin sets itself: the stream depends on raw PCM at 1x, streamed,
# with alignments in audio.done.
MANAGED_KEYS = frozenset(
    {"type", "response_format", "stream_audio", "speed", "timestamp_type",
     "timestamp_transport_strategy"}
)  # fmt: skip


@dataclasses.dataclass
class Qwen3Options:
    voice: str
    task_type: str = "Base"
    language: str | None = "Auto"
    instructions: str | None = None
    max_new_tokens: int | None = None
    initial_codec_chunk_frames: int | None = None
    x_vector_only_mode: bool | None = None
    ref_audio: str | None = None  # an http(s) URL, or the base64 of a local file
    ref_text: str | None = None
    word_timestamps: bool = False
    extra_config: dict[str, Any] = dataclasses.field(default_factory=dict)

    def check(self) -> None:
        """Refuses what the server would refuse, or what could not reach it as given."""
        if not self.voice:
            raise ValueError(
                "voice is required for model='qwen3-tts': the name of a voice registered on "
                "the deployment (see register_voice), or a preset of a CustomVoice deployment"
            )
        if self.task_type not in TASK_TYPES:
            raise ValueError(f"task_type must be one of {TASK_TYPES}, got {self.task_type!r}")
        for name in ("max_new_tokens", "initial_codec_chunk_frames"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.ref_text is not None and self.ref_audio is None:
            raise ValueError("ref_text is the transcript of ref_audio: pass ref_audio too")
        if managed := sorted(MANAGED_KEYS & self.extra_config.keys()):
            raise ValueError(f"extra_config may not set {managed}: the plugin sets them")
        try:
            json.dumps(self.extra_config)
        except (TypeError, ValueError) as e:
            raise ValueError(f"extra_config must be JSON-serializable: {e}") from None

    def session_config(self) -> dict[str, Any]:
        """The `session.config` message. It also identifies the session a socket holds."""
        config: dict[str, Any] = {
            "type": "session.config",
            "task_type": self.task_type,
            "response_format": "pcm",
            "stream_audio": True,
            # The server streams PCM at 1x only, and refuses other speeds.
            "speed": 1.0,
            "voice": self.voice,
        }
        optional = {
            "language": self.language,
            "instructions": self.instructions,
            "max_new_tokens": self.max_new_tokens,
            "initial_codec_chunk_frames": self.initial_codec_chunk_frames,
            "x_vector_only_mode": self.x_vector_only_mode,
            "ref_audio": self.ref_audio,
            "ref_text": self.ref_text,
        }
        config.update({k: v for k, v in optional.items() if v is not None})
        if self.word_timestamps:
            # "sync" puts a sentence's words in its audio.done, after its audio: their times
            # land on a known offset. ("async" sends them interleaved, at any point.)
            config["timestamp_type"] = "word"
            config["timestamp_transport_strategy"] = "sync"
        config.update(self.extra_config)
        return config


def load_ref_audio(ref_audio: str) -> str:
    """`ref_audio` as the server takes it: a URL as is, a local file as base64."""
    if ref_audio.startswith(("http://", "https://")):
        return ref_audio
    try:
        return base64.b64encode(Path(ref_audio).read_bytes()).decode()
    except OSError as e:
        raise ValueError(f"ref_audio {ref_audio!r} is neither an http(s) URL nor a readable "
                         f"file: {e.strerror}") from None  # fmt: skip


def word_timings(event: dict[str, Any], offset: float) -> tuple[list[TimedString], bool]:
    """The words of an `audio.done`, timed from the start of the synthesis (`offset`: where
    the sentence's audio began), and whether the alignment was whole. Words with a missing
    or impossible time are left out rather than given a wrong one."""
    info = event.get("timestamp_info")
    alignment = info.get("word_alignment") if isinstance(info, dict) else None
    if not isinstance(alignment, dict):
        return [], False
    words = alignment.get("words")
    starts = alignment.get("word_start_times_seconds")
    ends = alignment.get("word_end_times_seconds")
    if not (isinstance(words, list) and isinstance(starts, list) and isinstance(ends, list)):
        return [], False
    timed = [
        TimedString(f"{word} ", start_time=offset + start, end_time=offset + end)
        for word, start, end in zip(words, starts, ends)  # noqa: B905 - checked below
        if isinstance(word, str) and word.strip() and _time(start) and _time(end) and start <= end
    ]
    return timed, len(timed) == len(words) == len(starts) == len(ends)


def _time(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


class Qwen3Backend:
    """What a `TTS(model="qwen3-tts")` holds: where to connect, the options of the next
    synthesis, and the warm socket."""

    def __init__(self, *, dialer: Dialer, opts: Qwen3Options) -> None:
        opts.check()
        self.opts = opts
        self._dialer = dialer
        self._slot = WarmSlot()

    def update_options(
        self,
        *,
        voice: NotGivenOr[str],
        language: NotGivenOr[str],
        instructions: NotGivenOr[str | None],
        max_new_tokens: NotGivenOr[int | None],
    ) -> None:
        opts = replace_given(
            self.opts,
            voice=voice,
            language=language,
            instructions=instructions,
            max_new_tokens=max_new_tokens,
        )
        opts.check()
        self.opts = opts

    def prewarm(self, timeout: float) -> None:
        """Opens and configures the warm socket ahead of the first synthesis, in the
        background; a failure only means the synthesis opens its own."""
        if not self._slot.ready():
            self._slot.spawn(self._prewarm(timeout))

    async def _prewarm(self, timeout: float) -> None:
        try:
            sock = await self._dial(timeout)
        except (APIError, RuntimeError) as e:  # RuntimeError: no job, hence no session
            logger.debug("Qwen3-TTS prewarm failed: %s", e)
            return
        config = self.opts.session_config()
        try:
            await sock.send(config)
        except (aiohttp.ClientError, ConnectionError):
            await sock.close(polite=False)
            return
        sock.config = config
        await self.release(sock, reusable=True)

    async def acquire(self, timeout: float) -> Qwen3Socket:
        """The warm socket, or a new one."""
        if (sock := await self._slot.take()) is not None:
            return sock
        return await self._dial(timeout)

    async def _dial(self, timeout: float) -> Qwen3Socket:
        return Qwen3Socket(await self._dialer.dial(timeout))

    async def release(self, sock: Qwen3Socket, *, reusable: bool) -> None:
        """Parks a socket whose synthesis finished cleanly; closes any other."""
        if reusable and self._slot.park(sock):
            return
        await sock.close(polite=reusable)

    async def aclose(self) -> None:
        await self._slot.aclose()


@dataclasses.dataclass
class _Turn:
    """What the sender and receiver of one synthesis share."""

    ended_at: float | None = None  # when input.done went out
    last_message_at: float = 0.0
    audio_bytes: int = 0  # of PCM pushed to the emitter
    sentence_offset: float = 0.0  # where the current sentence's audio began, in seconds
    warned: set[str] = dataclasses.field(default_factory=set)

    @property
    def audio(self) -> bool:
        return self.audio_bytes > 0

    def warn_once(self, kind: str, message: str, *args: object) -> None:
        if kind not in self.warned:
            self.warned.add(kind)
            logger.warning(message, *args)


class Qwen3SynthesizeStream(tts.SynthesizeStream):
    """One synthesis on Qwen3-TTS: tokens in as they come, 24 kHz PCM out as generated, with
    the word alignment as LiveKit's timed transcript when `word_timestamps` is on."""

    def __init__(
        self, *, tts: tts.TTS[Any], backend: Qwen3Backend, conn_options: APIConnectOptions
    ) -> None:
        super().__init__(tts=tts, conn_options=conn_options)
        self._backend = backend
        self._opts = dataclasses.replace(backend.opts)

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        request_id = utils.shortuuid()
        output_emitter.initialize(
            request_id=request_id,
            sample_rate=SAMPLE_RATE,
            num_channels=NUM_CHANNELS,
            mime_type="audio/pcm",
            stream=True,
        )
        sock = await self._backend.acquire(self._conn_options.timeout)
        turn = _Turn(last_message_at=time.monotonic())
        clean = False
        lost: APIConnectionError | None = None
        try:
            # The config goes out before the first token: the server readies the voice while
            # the LLM is still thinking.
            config = self._opts.session_config()
            if sock.config != config:
                sock.config = None  # until sent whole
                await sock.send(config)
                sock.config = config
            sender = asyncio.create_task(self._send(sock, turn), name="baseten.TTS.qwen3.send")
            receiver = asyncio.create_task(
                self._receive(sock, turn, output_emitter, request_id),
                name="baseten.TTS.qwen3.recv",
            )
            try:
                if await supervise(
                    turn,
                    sender,
                    receiver,
                    timeout=self._conn_options.timeout,
                    server="Baseten Qwen3-TTS",
                ):
                    output_emitter.end_segment()
                clean = True
            finally:
                await utils.aio.cancel_and_wait(sender, receiver)
                for task in (sender, receiver):  # retrieve what a task raised meanwhile
                    if not task.cancelled():
                        task.exception()
        except APIError as e:
            if turn.audio:  # a retry would say it twice
                e.retryable = False
            raise
        except (aiohttp.ClientError, ConnectionError) as e:
            lost = APIConnectionError(
                f"Baseten Qwen3-TTS connection lost: {type(e).__name__}: {e}",
                retryable=not turn.audio,
            )
        finally:
            # A synthesis cut short (an error, an interruption) leaves the server generating
            # for nobody: only a socket that finished cleanly is kept.
            await self._backend.release(sock, reusable=clean)
        if lost is not None:
            raise lost  # outside the except block: no aiohttp exception chained to it

    async def _send(self, sock: Qwen3Socket, turn: _Turn) -> bool:
        """Sends the text; returns whether there was any."""
        started = False
        async for item in self._input_ch:
            if isinstance(item, str):
                if not started:
                    started = True
                    self._mark_started()
                await sock.send({"type": "input.text", "text": item})
            elif started:
                break  # a flush ends the (single) segment of a LiveKit stream
        if started:
            # Marked before sending: the reply may be read before this task resumes.
            turn.ended_at = time.monotonic()
            await sock.send({"type": "input.done"})
        return started

    async def _receive(
        self,
        sock: Qwen3Socket,
        turn: _Turn,
        output_emitter: tts.AudioEmitter,
        request_id: str,
    ) -> None:
        segment = False
        while True:
            msg = await sock.inbox.get()  # the deadline is the supervisor's
            turn.last_message_at = time.monotonic()
            if msg.type == aiohttp.WSMsgType.BINARY:
                if not segment:
                    segment = True
                    output_emitter.start_segment(segment_id=request_id)
                output_emitter.push(msg.data)
                turn.audio_bytes += len(msg.data)
                continue
            if msg.type != aiohttp.WSMsgType.TEXT:
                detail = msg.data if isinstance(msg.data, BaseException) else sock.ws.exception()
                raise APIConnectionError(
                    "Baseten Qwen3-TTS closed the connection before the end "
                    f"(code {sock.ws.close_code}{f': {detail}' if detail else ''})"
                )
            try:
                event = json.loads(msg.data)
                kind = event["type"]
            except (ValueError, TypeError, KeyError):
                turn.warn_once("malformed", "Qwen3-TTS sent a malformed message: %.200s", msg.data)
                continue
            if kind == "audio.start":
                rate = event.get("sample_rate", SAMPLE_RATE)
                if rate != SAMPLE_RATE:
                    raise APIError(
                        f"Baseten Qwen3-TTS sends {rate} Hz audio; this plugin takes "
                        f"{SAMPLE_RATE} Hz PCM",
                        body=msg.data[:2000],
                        retryable=False,
                    )
                turn.sentence_offset = turn.audio_bytes / BYTES_PER_SECOND
            elif kind == "audio.done":
                if error := event.get("error"):
                    raise APIStatusError(
                        f"Baseten Qwen3-TTS failed sentence {event.get('sentence_index')}: {error}",
                        status_code=500,
                        request_id=request_id,
                        body=msg.data[:2000],
                    )
                if self._opts.word_timestamps:
                    words, whole = word_timings(event, turn.sentence_offset)
                    if not whole:
                        turn.warn_once(
                            "alignment",
                            "Qwen3-TTS sent an incomplete word alignment (sentence %s): "
                            "untimed words are left out of the aligned transcript",
                            event.get("sentence_index"),
                        )
                    if words:
                        output_emitter.push_timed_transcript(words)
            elif kind == "session.done" and turn.ended_at is not None:
                if not segment:  # text but no audio: still one (empty) segment
                    output_emitter.start_segment(segment_id=request_id)
                return
            elif kind == "error":
                message = str(event.get("message", "unknown error"))[:2000]
                raise APIStatusError(
                    f"Baseten Qwen3-TTS error: {message}",
                    status_code=500,
                    request_id=request_id,
                    body=msg.data[:2000],
                )
            else:  # a session.done before input.done, or a type newer than this plugin
                logger.debug("Qwen3-TTS: ignoring a %r message", kind)
