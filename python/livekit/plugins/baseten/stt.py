# SPDX-License-Identifier: Apache-2.0

"""Streaming speech-to-text on Baseten's Whisper WebSocket.

The data path, per stream:
    push_frame -> Rust SendPipeline (downmix, resample, 512-sample frames, encode) -> Outbox
    -> sender task -> socket;  socket -> receiver task -> Rust parse_message -> SpeechEvents.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import math
import time
import weakref
from collections import deque
from enum import Enum
from typing import Any

import aiohttp
from livekit import rtc
from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    APIConnectionError,
    APIConnectOptions,
    APIError,
    APIStatusError,
    APITimeoutError,
    stt,
    utils,
)
from livekit.agents.language import LanguageCode
from livekit.agents.types import NOT_GIVEN, NotGivenOr, TimedString
from livekit.agents.utils import AudioBuffer, is_given
from typing_extensions import TypedDict, Unpack

from . import _native
from ._direct_writer import DirectWriter
from ._endpoint import CHAIN_WS_URL, TRUSS_WS_URL, resolve_api_key, resolve_endpoint
from ._outbox import Outbox
from ._websocket import connect, failure_of
from ._whisper_protocol import (
    END_AUDIO,
    FRAME_SECONDS,
    HEALTH_CHECK,
    WIRE_SAMPLE_RATES,
    STTOptions,
    check_options,
    metadata_json,
    whisper_language,
)
from .log import logger
from .models import MuLawFlavour, STTEncoding, STTModels

# After this long without a message (or conn_options.timeout, if shorter) a health_check goes
# out; its answer proves the server is alive, and the silence keeps idle sockets open.
KEEPALIVE_INTERVAL_S = 5.0
# Audio kept for a connection that is down or being replaced, before the oldest is dropped;
# also the most audio resent after a connection dies (the server cuts utterances at 30 s).
MAX_BUFFERED_AUDIO_S = 30.0
_MAX_FRAMES = round(MAX_BUFFERED_AUDIO_S / FRAME_SECONDS)
# Transcript messages are small; anything bigger than this is not a Whisper server talking.
MAX_MESSAGE_BYTES = 1 << 20
# A connection that stayed up this long has earned a fresh retry budget.
HEALTHY_CONNECTION_S = 60.0
# Whisper's timestamps can overshoot the audio a little; a transcript timed further than this
# past all the audio sent comes from a broken server, and its times are clamped to that audio.
TIME_SLACK_S = 1.0
# When sending fails, how long the receiver may still report that the server finished (a
# server that closes right after `finished` makes the last send fail).
CLOSE_GRACE_S = 1.0
# RECOGNITION_USAGE goes out for every this many seconds of audio sent (and for the rest when
# the stream ends), as LiveKit's own streaming plugins report it: not with each final, where
# it would delay END_OF_SPEECH and, with many streams finalising together, other finals.
USAGE_REPORT_S = 5.0
_USAGE_REPORT_FRAMES = math.ceil(USAGE_REPORT_S / FRAME_SECONDS)

_BUFFER_SIZE_SECONDS = FRAME_SECONDS


class STTOptionChanges(TypedDict, total=False):
    """What `update_options` may change; the existing plugin's six, plus `prompt`."""

    vad_threshold: NotGivenOr[float]
    vad_min_silence_duration_ms: NotGivenOr[int]
    vad_speech_pad_ms: NotGivenOr[int]
    language: NotGivenOr[str]
    language_options: NotGivenOr[list[str]]
    prompt: NotGivenOr[str | None]
    buffer_size_seconds: NotGivenOr[float]


class STT(stt.STT[None]):
    _TRUSS_URL_TEMPLATE = TRUSS_WS_URL
    _CHAIN_URL_TEMPLATE = CHAIN_WS_URL

    def __init__(
        self,
        *,
        model: STTModels = "whisper",
        api_key: str | None = None,
        model_endpoint: str | None = None,
        model_id: str | None = None,
        chain_id: str | None = None,
        sample_rate: NotGivenOr[int] = NOT_GIVEN,
        encoding: NotGivenOr[STTEncoding] = NOT_GIVEN,
        mulaw_flavour: MuLawFlavour = "continuous",
        buffer_size_seconds: float = _BUFFER_SIZE_SECONDS,
        language: NotGivenOr[str] = NOT_GIVEN,
        language_options: list[str] | None = None,
        prompt: str | None = None,
        enable_partial_transcripts: bool = True,
        partial_transcript_interval_s: NotGivenOr[float] = NOT_GIVEN,
        final_transcript_max_duration_s: int = 30,
        show_word_timestamps: NotGivenOr[bool] = NOT_GIVEN,
        vad_threshold: float = 0.5,
        vad_min_silence_duration_ms: NotGivenOr[int] = NOT_GIVEN,
        vad_speech_pad_ms: NotGivenOr[int] = NOT_GIVEN,
        http_session: aiohttp.ClientSession | None = None,
    ) -> None:
        """Baseten streaming Whisper speech-to-text.

        The endpoint, in priority order: ``model_endpoint`` (a ``wss://`` or ``ws://`` URL),
        ``model_id`` (``wss://model-{model_id}.api.baseten.co/environments/production/websocket``),
        ``chain_id`` (``wss://chain-{chain_id}.api.baseten.co/...``), or the
        ``BASETEN_MODEL_ENDPOINT`` environment variable.

        Args:
            model: only ``"whisper"``: this plugin speaks Baseten's streaming Whisper protocol.
            api_key: Baseten API key; defaults to ``BASETEN_API_KEY``.
            sample_rate: the rate the server decodes: 16000 for ``pcm_s16le``, 8000 for
                ``pcm_mulaw`` (the default for each). Input frames may have any rate and
                channel count; the plugin resamples them.
            encoding: ``"pcm_s16le"`` (default) or ``"pcm_mulaw"`` (8 kHz mu-law, half the
                bandwidth).
            mulaw_flavour: the mu-law curve for ``pcm_mulaw``: ``"continuous"`` (torchaudio's,
                which Baseten's Whisper server decodes) or ``"g711"`` (ITU-T G.711).
            buffer_size_seconds: the server's frame, 0.032 s; any other value is refused.
            language: Whisper language code (default ``"en"``), or ``"auto"`` to detect.
            language_options: restrict detection to these codes (server runtime >= v0.5.0).
            prompt: Whisper's initial prompt, to bias it towards a vocabulary.
            enable_partial_transcripts: emit interim transcripts while the user speaks.
            partial_transcript_interval_s: seconds of speech between partials (default 1.0).
            final_transcript_max_duration_s: longest utterance before the server forces a
                final, 1 to 30 seconds (the server's limit).
            show_word_timestamps: word-level timestamps (default True); without them each
                transcript segment is one timed chunk.
            vad_threshold, vad_min_silence_duration_ms, vad_speech_pad_ms: the server's VAD
                (defaults 0.5, 300 and 30).
            http_session: the aiohttp session to use; defaults to the job's.
        """
        if model != "whisper":
            raise ValueError(
                f"model {model!r} is not supported: this plugin speaks Baseten's streaming "
                "Whisper protocol (model='whisper')"
            )
        enc: STTEncoding = encoding if is_given(encoding) else "pcm_s16le"
        if enc not in WIRE_SAMPLE_RATES:
            raise ValueError(f"encoding must be 'pcm_s16le' or 'pcm_mulaw', got {enc!r}")
        if is_given(sample_rate) and sample_rate != WIRE_SAMPLE_RATES[enc]:
            raise ValueError(
                f"Baseten's Whisper server decodes {enc} at {WIRE_SAMPLE_RATES[enc]} Hz only; "
                f"got sample_rate={sample_rate}. Input frames may have any rate: the plugin "
                "resamples them."
            )
        _check_buffer_size(buffer_size_seconds)
        self._opts = STTOptions(
            language=whisper_language(language if is_given(language) else "en"),
            encoding=enc,
            mulaw_flavour=mulaw_flavour,
            language_options=[whisper_language(lang) for lang in language_options or []],
            prompt=prompt,
            enable_partial_transcripts=enable_partial_transcripts,
            partial_transcript_interval_s=(
                partial_transcript_interval_s if is_given(partial_transcript_interval_s) else 1.0
            ),
            final_transcript_max_duration_s=final_transcript_max_duration_s,
            show_word_timestamps=(show_word_timestamps if is_given(show_word_timestamps) else True),
            vad_threshold=vad_threshold,
            vad_min_silence_duration_ms=(
                vad_min_silence_duration_ms if is_given(vad_min_silence_duration_ms) else 300
            ),
            vad_speech_pad_ms=vad_speech_pad_ms if is_given(vad_speech_pad_ms) else 30,
        )
        check_options(self._opts)
        super().__init__(
            capabilities=stt.STTCapabilities(
                streaming=True,
                interim_results=enable_partial_transcripts,
                aligned_transcript="word" if self._opts.show_word_timestamps else "chunk",
                offline_recognize=True,
            )
        )
        self._api_key = resolve_api_key(api_key)
        self._endpoint = resolve_endpoint(
            model_endpoint=model_endpoint,
            model_id=model_id,
            chain_id=chain_id,
            truss_template=TRUSS_WS_URL,
            chain_template=CHAIN_WS_URL,
            schemes=("wss", "ws"),
        )
        self._session = http_session
        self._streams: weakref.WeakSet[SpeechStream] = weakref.WeakSet()

    @property
    def model(self) -> str:
        return "whisper"

    @property
    def provider(self) -> str:
        return "Baseten"

    def __repr__(self) -> str:
        return f"baseten.STT(endpoint={self._endpoint!r}, language={self._opts.language!r})"

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = utils.http_context.http_session()
        return self._session

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> SpeechStream:
        opts = dataclasses.replace(self._opts, language_options=list(self._opts.language_options))
        if is_given(language):
            opts.language = whisper_language(language)
        stream = SpeechStream(
            stt=self,
            opts=opts,
            conn_options=conn_options,
            api_key=self._api_key,
            model_endpoint=self._endpoint,
            http_session=self._ensure_session(),
        )
        self._streams.add(stream)
        return stream

    async def _recognize_impl(
        self,
        buffer: AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        # The same protocol as streaming: the buffer, end_audio, then the finals joined. The
        # base class retries recognize(), so the stream inside must not retry too.
        stream = self.stream(
            language=language,
            conn_options=dataclasses.replace(conn_options, max_retry=0),
        )
        stream._report_errors = False
        finals: list[stt.SpeechData] = []
        try:
            frame = rtc.combine_audio_frames(buffer) if isinstance(buffer, list) else buffer
            if frame.samples_per_channel:
                stream.push_frame(frame)
            stream.end_input()
            async for ev in stream:
                if ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT:
                    finals.append(ev.alternatives[0])
        finally:
            await stream.aclose()
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            request_id=stream.request_id,
            alternatives=[_join(finals, stream.language)],
        )

    def update_options(self, **changes: Unpack[STTOptionChanges]) -> None:
        """Changes options (any of `STTOptionChanges`) for new streams and for every live
        stream, which reconnect with the new metadata, keeping the audio already pushed."""
        self._opts = _apply_changes(self._opts, changes)
        for stream in list(self._streams):
            stream.update_options(**changes)

    async def aclose(self) -> None:
        await asyncio.gather(*(s.aclose() for s in list(self._streams)))
        await super().aclose()


class _End(Enum):
    """How one connection ended, when it ended well."""

    FINISHED = "the input ended and the server finished"
    SWITCH = "options changed: the next connection carries the new metadata"


@dataclasses.dataclass(slots=True)
class _Connection:
    ws: aiohttp.ClientWebSocketResponse
    request_id: str
    last_message_at: float
    direct: DirectWriter | None
    # Set by the sender once end_audio is out; the receiver then drains until "finished".
    ending: _End | None = None
    end_audio_at: float = 0.0
    health_check_pending: bool = False
    # Frames sent but not yet covered by a final transcript, and the connection-relative
    # index of the first of them. The protocol has no acks: a socket that dies may have
    # swallowed these unread, so they go again on the next connection.
    unconfirmed: deque[bytes] = dataclasses.field(default_factory=deque)
    first_unconfirmed: int = 0

    def sent(self, frame: bytes) -> None:
        self.unconfirmed.append(frame)
        if len(self.unconfirmed) > _MAX_FRAMES:
            self.unconfirmed.popleft()
            self.first_unconfirmed += 1

    def confirm_until(self, seconds: float) -> None:
        """A final transcript ending at `seconds` (connection time) covers the audio before:
        frame k (from 0) once `(k + 1) * FRAME_SECONDS <= seconds + 1e-6` (the slack is for
        the server's rounding). Times that are not finite confirm nothing."""
        if not math.isfinite(seconds):
            return
        # Counted at once rather than tested frame by frame (a final covers ~150 frames, and
        # the test per frame was most of the cost of handling one); the division's estimate is
        # then settled by the rule itself, so rounding cannot move a frame either way.
        limit = seconds + 1e-6
        covered = max(math.floor(limit / FRAME_SECONDS), 0)
        while (covered + 1) * FRAME_SECONDS <= limit:
            covered += 1
        while covered > 0 and covered * FRAME_SECONDS > limit:
            covered -= 1
        count = min(covered - self.first_unconfirmed, len(self.unconfirmed))
        for _ in range(count):
            self.unconfirmed.popleft()
        self.first_unconfirmed += max(count, 0)


class SpeechStream(stt.SpeechStream):
    """A streaming transcription on Baseten's Whisper WebSocket."""

    def __init__(
        self,
        *,
        stt: STT,
        opts: STTOptions,
        conn_options: APIConnectOptions,
        api_key: str,
        model_endpoint: str,
        http_session: aiohttp.ClientSession,
    ) -> None:
        # No sample_rate for the base class: the Rust pipeline resamples, not LiveKit's FFI.
        super().__init__(stt=stt, conn_options=conn_options)
        self._opts = opts
        self._api_key = api_key
        self._endpoint = model_endpoint
        self._session = http_session
        self._pipeline: _native.SendPipeline | None = None
        self._outbox = Outbox(max_frames=_MAX_FRAMES)
        # The connection that push_frame may write to directly: set while its sender is idle
        # (outbox empty, nothing in flight), so direct frames can never overtake queued ones.
        self._idle: _Connection | None = None
        self._options_changed = False
        self._report_errors = True
        self._speaking = False
        # Whole frames, so that audio counted out for resending and back in adds up exactly.
        self._frames_sent = 0
        self._frames_reported = 0
        self._request_id = ""
        self._warned: set[str] = set()  # kinds of server trouble already logged (_warn_once)

    @property
    def request_id(self) -> str:
        """The id of the current (or last) connection, as set on its events."""
        return self._request_id

    @property
    def language(self) -> str:
        return self._opts.language

    def __repr__(self) -> str:
        return f"baseten.SpeechStream(endpoint={self._endpoint!r}, request_id={self._request_id!r})"

    # -- input (runs in the caller's context) -------------------------------------------------

    def push_frame(self, frame: rtc.AudioFrame) -> None:
        # Runs once per 20 ms for every stream in the process, cache-cold when there are
        # hundreds: every attribute and call here costs, so the base class's checks run only
        # to raise their errors.
        if self._input_ch.closed or self._event_ch.closed:
            self._check_input_not_ended()
            self._check_not_closed()
        pipeline = self._pipeline
        if pipeline is None:
            pipeline = self._pipeline = _native.SendPipeline(
                frame.sample_rate,
                frame.num_channels,
                self._opts.encoding,
                self._opts.mulaw_flavour,
            )
        # The pipeline refuses a change of rate or channels (ValueError).
        if frames := pipeline.push(_frame_bytes(frame), frame.sample_rate, frame.num_channels):
            self._send(frames)

    def flush(self) -> None:
        """Sends the audio pushed so far, the last frame zero-padded (the protocol has no
        flush message: the server's VAD decides where utterances end)."""
        self._check_input_not_ended()
        self._check_not_closed()
        if self._pipeline is not None and (frames := self._pipeline.flush()):
            self._send(frames)

    def _send(self, frames: list[bytes]) -> None:
        conn = self._idle
        if conn is not None and conn.direct is not None and conn.direct.ready():
            write, sent = conn.direct.write, conn.sent
            for frame in frames:
                write(frame)
                sent(frame)
            self._count_sent(len(frames))
        else:
            self._outbox.extend(frames)  # the sender task sends them

    def end_input(self) -> None:
        """No more audio: the stream sends what is left, asks the server to finish, emits the
        last transcripts and ends (iteration stops by itself)."""
        super().end_input()  # flush() then close the input channel
        self._outbox.notify()

    def update_options(self, **changes: Unpack[STTOptionChanges]) -> None:
        """Reconnects with new metadata. The current connection finishes first (end_audio,
        its last transcripts), and audio pushed meanwhile waits for the new one."""
        self._opts = _apply_changes(self._opts, changes)
        self._options_changed = True
        self._idle = None  # audio pushed from now on is for the next connection
        self._outbox.notify()

    # -- connection lifecycle ---------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._run_connections()
        finally:
            # However the stream ends (its end, a failure, aclose), the audio sent since the
            # last report is reported.
            if not self._event_ch.closed:
                self._report_usage()

    async def _run_connections(self) -> None:
        # Reconnection is handled here rather than by the base class, whose retry counter is
        # reset by every final transcript: a server that closes after each final would be
        # reconnected to forever. Here the budget is conn_options.max_retry consecutive
        # failures, renewed only by a connection that stayed up HEALTHY_CONNECTION_S.
        failures = 0
        while True:
            started = time.monotonic()
            try:
                if await self._run_connection() is _End.FINISHED:
                    return
                failures = 0
                continue
            except APIError as e:
                error = e
            if not error.retryable or self._conn_options.max_retry == 0:
                raise error
            if time.monotonic() - started >= HEALTHY_CONNECTION_S:
                failures = 0
            if failures >= self._conn_options.max_retry:
                raise APIConnectionError(
                    f"Baseten STT failed after {failures + 1} attempts: {error}",
                    retryable=False,
                ) from error
            self._emit_error(error, recoverable=True)
            delay = self._conn_options._interval_for_retry(failures)
            logger.warning("Baseten STT connection failed (%s); retrying in %.1fs", error, delay)
            failures += 1
            await asyncio.sleep(delay)

    async def _run_connection(self) -> _End:
        ws = await connect(
            self._session,
            self._endpoint,
            api_key=self._api_key,
            timeout=self._conn_options.timeout,
            max_msg_size=MAX_MESSAGE_BYTES,
        )
        conn = _Connection(
            ws=ws,
            request_id=utils.shortuuid(),
            last_message_at=time.monotonic(),
            direct=DirectWriter.of(ws),
        )
        self._request_id = conn.request_id
        # Server times restart at 0 on every socket. The audio before this socket's first
        # frame (sent, or dropped while no socket took it) keeps them on the input's timeline;
        # the wall-clock time between attempts, which the base class adds, would not.
        self.start_time_offset = (self._frames_sent + self._outbox.dropped_frames) * FRAME_SECONDS
        self._options_changed = False
        sender: asyncio.Task[None] | None = None
        receiver: asyncio.Task[_End] | None = None
        try:
            try:
                await ws.send_str(metadata_json(self._opts))
            except (aiohttp.ClientError, ConnectionError) as e:
                raise _as_api_error(e, "sending metadata") from None
            sender = asyncio.create_task(self._send_loop(conn), name="baseten.STT.send")
            receiver = asyncio.create_task(self._recv_loop(conn), name="baseten.STT.recv")
            return await self._supervise(conn, sender, receiver)
        except APIError:
            self._resend_unconfirmed(conn)
            raise
        finally:
            self._idle = None
            try:
                tasks = [t for t in (sender, receiver) if t is not None]
                await utils.aio.cancel_and_wait(*tasks)
                for task in tasks:  # retrieve what a task raised while another decided
                    if not task.cancelled():
                        task.exception()
            finally:
                await ws.close()

    async def _supervise(
        self, conn: _Connection, sender: asyncio.Task[None], receiver: asyncio.Task[_End]
    ) -> _End:
        """Waits for the connection's outcome, and owns its deadlines: the tasks can block
        (a send on a socket nobody reads, a receive nobody answers), this cannot."""
        timeout = self._conn_options.timeout
        keepalive = min(KEEPALIVE_INTERVAL_S, timeout)
        pending: set[asyncio.Task[Any]] = {sender, receiver}

        def deadline() -> float:
            # Silence past a health check's time plus the timeout means the server is gone;
            # after end_audio the server has the timeout to finish.
            at = conn.last_message_at + keepalive + timeout
            return min(at, conn.end_audio_at + timeout) if conn.ending is not None else at

        while True:
            wait = max(deadline() - time.monotonic(), 0.0)
            done, pending = await asyncio.wait(
                pending, timeout=wait, return_when=asyncio.FIRST_COMPLETED
            )
            if receiver in done:
                return receiver.result()
            if sender in done and (error := sender.exception()) is not None:
                await asyncio.wait({receiver}, timeout=CLOSE_GRACE_S)
                if receiver.done() and receiver.exception() is None:
                    return receiver.result()
                raise _as_api_error(error, "sending audio")
            if done:
                continue  # the sender finished normally: end_audio is out, a new deadline
            if time.monotonic() < deadline():
                continue  # a message came in meanwhile and moved the deadline
            if conn.ending is _End.SWITCH:
                logger.warning("Baseten did not finish the old connection; switching anyway")
                self._resend_unconfirmed(conn)
                return _End.SWITCH
            if conn.ending is _End.FINISHED:
                # Retryable: the audio this connection never confirmed goes to the next one.
                raise APITimeoutError(
                    f"Baseten did not finish the transcription within {timeout:g}s of end_audio"
                )
            raise APITimeoutError(f"Baseten did not answer for {keepalive + timeout:g}s")

    def _resend_unconfirmed(self, conn: _Connection) -> None:
        frames = list(conn.unconfirmed)
        conn.unconfirmed.clear()
        self._outbox.requeue(frames)
        self._frames_sent -= len(frames)

    async def _send_loop(self, conn: _Connection) -> None:
        ws, outbox = conn.ws, self._outbox
        keepalive = min(KEEPALIVE_INTERVAL_S, self._conn_options.timeout)
        while True:
            while not self._options_changed and (frame := outbox.take()) is not None:
                # Counted as sent before the send: a connection that dies meanwhile puts it
                # back with the other unconfirmed frames, in order.
                conn.sent(frame)
                self._count_sent(1)
                await ws.send_bytes(frame)
            finished = self._input_ch.closed and not len(outbox)
            if finished or self._options_changed:
                conn.ending = _End.FINISHED if finished else _End.SWITCH
                conn.end_audio_at = time.monotonic()
                await ws.send_str(END_AUDIO)
                return
            if not conn.health_check_pending and (
                time.monotonic() - conn.last_message_at >= keepalive
            ):
                conn.health_check_pending = True
                await ws.send_str(HEALTH_CHECK)
            self._idle = conn
            await outbox.wait(timeout=keepalive / 2)
            self._idle = None

    async def _recv_loop(self, conn: _Connection) -> _End:
        ws = conn.ws
        while True:
            msg = await ws.receive()  # deadlines are the supervisor's
            conn.last_message_at = time.monotonic()
            conn.health_check_pending = False
            if msg.type == aiohttp.WSMsgType.TEXT:
                if (end := self._on_message(msg.data, conn)) is not None:
                    return end
            elif msg.type == aiohttp.WSMsgType.BINARY:
                self._warn_once("binary", "ignoring a binary message from Baseten's Whisper server")
            elif msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
            ):
                if self._input_ch.closed and not len(self._outbox) and not conn.unconfirmed:
                    return _End.FINISHED  # everything was transcribed: a normal end
                raise APIConnectionError(
                    f"Baseten closed the connection (code {ws.close_code})", retryable=True
                )
            else:  # ERROR: the socket failed, or a message was over MAX_MESSAGE_BYTES
                raise APIConnectionError(f"Baseten connection error: {failure_of(msg, ws)}")

    def _warn_once(self, kind: str, message: str, *args: object) -> None:
        """Logs `message` as a warning the first time this stream meets `kind` of trouble, at
        debug level after that: a server that keeps sending junk must not flood the logs."""
        level = logging.DEBUG if kind in self._warned else logging.WARNING
        self._warned.add(kind)
        logger.log(level, message, *args)

    def _emit_error(self, api_error: Exception, recoverable: bool) -> None:
        # recognize() runs a stream of its own and reports errors itself, once, with the
        # right recoverability: its stream must not report them too.
        if self._report_errors:
            super()._emit_error(api_error, recoverable)

    # -- server messages -> events --------------------------------------------------------

    def _on_message(self, text: str, conn: _Connection) -> _End | None:
        try:
            msg = _native.parse_message(text, self.start_time_offset)
        except ValueError as e:
            self._warn_once("malformed", "ignoring a malformed message from Baseten: %s", e)
            return None
        if isinstance(msg, _native.Transcription):
            # The server cannot have heard past the audio sent to it (on the input's timeline).
            heard = (self._frames_sent + self._outbox.dropped_frames) * FRAME_SECONDS
            if msg.is_final:
                conn.confirm_until(min(msg.end, heard) - self.start_time_offset)
            self._on_transcription(msg, conn.request_id, heard)
        elif isinstance(msg, _native.EndAudio):
            if msg.status == "finished" and conn.ending is not None:
                conn.unconfirmed.clear()
                return conn.ending
        elif isinstance(msg, _native.ServerError):
            if msg.recoverable:
                kind = f"error {msg.error_type}"
                self._warn_once(kind, "Baseten reported a recoverable error: %s", msg.message)
            else:
                raise _server_error(msg)
        elif isinstance(msg, _native.UnknownMessage):
            logger.debug("ignoring a Baseten message of type %r", msg.kind)
        return None

    def _on_transcription(self, t: _native.Transcription, request_id: str, heard: float) -> None:
        send = self._event_ch.send_nowait
        said: list[stt.SpeechData] = []
        start, end, words = t.start, t.end, t.words
        if end > heard + TIME_SLACK_S:
            self._warn_once(
                "times",
                "Baseten timed a transcript at %.3fs, past the audio it was sent (%.3fs): "
                "clamping its times",
                end,
                heard,
            )
            start, end = min(start, heard), heard
            words = [_clamped(w, heard) for w in words]
        if t.text:
            if not self._speaking:
                self._speaking = True
                send(stt.SpeechEvent(stt.SpeechEventType.START_OF_SPEECH, request_id=request_id))
            data = stt.SpeechData(
                language=_language_code(t.language or self._opts.language),
                text=t.text,
                start_time=start,
                end_time=end,
                confidence=t.confidence if t.confidence is not None else 0.0,
                words=words,
            )
            kind = (
                stt.SpeechEventType.FINAL_TRANSCRIPT
                if t.is_final
                else stt.SpeechEventType.INTERIM_TRANSCRIPT
            )
            send(stt.SpeechEvent(kind, request_id=request_id, alternatives=[data]))
            said = [data]
        if t.is_final and self._speaking:
            self._speaking = False
            # The final's alternative tells LiveKit when the speech ended (its end_time on the
            # input's timeline), for an honest transcription delay and turn timing.
            send(
                stt.SpeechEvent(
                    stt.SpeechEventType.END_OF_SPEECH, request_id=request_id, alternatives=said
                )
            )

    def _count_sent(self, frames: int) -> None:
        self._frames_sent += frames
        if self._frames_sent - self._frames_reported >= _USAGE_REPORT_FRAMES:
            self._report_usage()

    def _report_usage(self) -> None:
        """RECOGNITION_USAGE for the audio sent since the last report (LiveKit's STT metrics)."""
        frames = self._frames_sent - self._frames_reported
        if frames <= 0:
            return
        self._frames_reported = self._frames_sent
        self._event_ch.send_nowait(
            stt.SpeechEvent(
                stt.SpeechEventType.RECOGNITION_USAGE,
                request_id=self._request_id,
                recognition_usage=stt.RecognitionUsage(
                    audio_duration=round(frames * FRAME_SECONDS, 6)
                ),
            )
        )


@functools.lru_cache(maxsize=128)
def _language_code(code: str) -> LanguageCode:
    """One LanguageCode per code, shared by every event: a stream names the same language in
    each of its transcripts, and a fresh one per event is one more object for the garbage
    collector to walk (and a normalisation) per transcript, hundreds of times a second."""
    return LanguageCode(code)


def _frame_bytes(frame: rtc.AudioFrame) -> bytes | bytearray | memoryview:
    """The frame's own buffer. `AudioFrame.data` builds two memoryviews per access (about
    0.3 us, as much as the whole Rust pipeline at 16 kHz); `_data` is what it views."""
    data = getattr(frame, "_data", None)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return data
    return frame.data


def _check_buffer_size(buffer_size_seconds: float) -> None:
    if abs(buffer_size_seconds - _BUFFER_SIZE_SECONDS) > 1e-9:
        raise ValueError(
            f"buffer_size_seconds must be {_BUFFER_SIZE_SECONDS} (Baseten's server takes frames "
            f"of exactly 512 samples at 16 kHz), got {buffer_size_seconds}"
        )


def _apply_changes(opts: STTOptions, changes: STTOptionChanges) -> STTOptions:
    """A validated copy of `opts` with `changes` (NOT_GIVEN values are ignored)."""
    new = dataclasses.replace(opts, language_options=list(opts.language_options))
    if is_given(size := changes.get("buffer_size_seconds", NOT_GIVEN)):
        _check_buffer_size(size)
    if is_given(threshold := changes.get("vad_threshold", NOT_GIVEN)):
        new.vad_threshold = threshold
    if is_given(silence := changes.get("vad_min_silence_duration_ms", NOT_GIVEN)):
        new.vad_min_silence_duration_ms = silence
    if is_given(pad := changes.get("vad_speech_pad_ms", NOT_GIVEN)):
        new.vad_speech_pad_ms = pad
    if is_given(language := changes.get("language", NOT_GIVEN)):
        new.language = whisper_language(language)
    if is_given(options := changes.get("language_options", NOT_GIVEN)):
        new.language_options = [whisper_language(code) for code in options]
    if is_given(prompt := changes.get("prompt", NOT_GIVEN)):
        new.prompt = prompt
    check_options(new)
    return new


def _clamped(word: TimedString, limit: float) -> TimedString:
    """`word` with its times no later than `limit`."""
    start = min(word.start_time, limit) if is_given(word.start_time) else word.start_time
    end = min(word.end_time, limit) if is_given(word.end_time) else word.end_time
    return TimedString(
        str(word),
        start_time=start,
        end_time=end,
        confidence=word.confidence,
        start_time_offset=word.start_time_offset,
        speaker_id=word.speaker_id,
    )


def _as_api_error(e: BaseException | None, doing: str) -> APIError:
    if isinstance(e, APIError):
        return e
    return APIConnectionError(f"Baseten connection lost while {doing}: {type(e).__name__}: {e}")


def _server_error(msg: _native.ServerError) -> APIError:
    """An unrecoverable `error` message. Audio or configuration the server refuses will be
    refused again: not retryable. Anything else (stream, transcription, socket trouble on the
    server) may pass on a new connection."""
    text = f"Baseten error {msg.error_type}: {msg.message}"
    if msg.error_type in ("AUDIO_PROCESSING_ERROR", "CONFIGURATION_ERROR"):
        return APIStatusError(text, status_code=400, body=msg.message, retryable=False)
    return APIConnectionError(text, retryable=True)


def _join(finals: list[stt.SpeechData], language: str) -> stt.SpeechData:
    if not finals:
        return stt.SpeechData(language=LanguageCode(language), text="")
    words = [w for f in finals for w in f.words or []]
    return stt.SpeechData(
        language=finals[0].language,
        text=" ".join(f.text for f in finals),
        start_time=finals[0].start_time,
        end_time=finals[-1].end_time,
        confidence=sum(f.confidence for f in finals) / len(finals),
        words=words,
    )
