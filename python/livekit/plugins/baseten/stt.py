# SPDX-License-Identifier: Apache-2.0

"""Streaming speech-to-text on Baseten's Whisper and Qwen3-ASR WebSockets.

The data path, per stream:
    push_frame -> Rust pipeline (downmix, resample, cut into the protocol's messages: Whisper's
    512-sample binary frames, Qwen3-ASR's 100 ms base64 JSON appends; WebSocket framing)
    -> AudioLedger -> FrameWriter -> socket (from push_frame, or from the sender task when the
    socket pushes back);
    socket -> receiver task -> Rust parse_message (times on the caller's timeline) -> events.
What differs between the two protocols is in their `Wire` (_stt_wire.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
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
    APITimeoutError,
    stt,
    utils,
)
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import AudioBuffer, is_given
from typing_extensions import Unpack

from . import _native
from ._audio_ledger import AudioLedger
from ._endpoint import CHAIN_WS_URL, TRUSS_WS_URL, resolve_api_key, resolve_endpoint
from ._frame_writer import FrameWriter, Wakeup
from ._private_api import audio_frame_buffer, check_input_open, retry_interval
from ._spare_socket import SpareSocket
from ._stt_wire import WIRES, Pipeline
from ._transcript_events import TranscriptEvents, joined
from ._websocket import Dialer, as_api_error, failure_of
from ._whisper_protocol import (
    FRAME_SECONDS,
    WIRE_SAMPLE_RATES,
    STTOptionChanges,
    STTOptions,
    apply_changes,
    check_buffer_size,
    check_options,
    server_error,
    stt_language,
    whisper_language,
)
from .log import logger
from .models import MuLawFlavour, STTEncoding, STTModels

# After this long without a message (or conn_options.timeout, if shorter) a health_check goes
# out; its answer proves the server is alive, and the silence keeps idle sockets open.
KEEPALIVE_INTERVAL_S = 5.0
# Audio kept until a final covers it (to resend it if its connection dies) or while no
# connection takes it, before the oldest goes: the server cuts utterances at 30 s anyway.
MAX_BUFFERED_AUDIO_S = 30.0
# Transcript messages are small; anything bigger than this is not a Baseten server talking.
MAX_MESSAGE_BYTES = 1 << 20
# A connection that stayed up this long has earned a fresh retry budget.
HEALTHY_CONNECTION_S = 60.0
# When sending fails, how long the receiver may still report that the server finished (a
# server that closes right after `finished` makes the last send fail).
CLOSE_GRACE_S = 1.0
# RECOGNITION_USAGE goes out once this many seconds of audio were sent (and for the rest when
# the stream ends), as LiveKit's own streaming plugins report it: not with each final, where
# it would delay END_OF_SPEECH and, with many streams finalising together, other finals. The
# sender task checks as it wakes (at least every keepalive / 2), never push_frame.
USAGE_REPORT_S = 5.0


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
        buffer_size_seconds: float = FRAME_SECONDS,
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
        """Baseten streaming speech-to-text: Whisper, or Qwen3-ASR.

        The endpoint, in priority order: ``model_endpoint`` (a ``wss://`` or ``ws://`` URL),
        ``model_id`` (``wss://model-{model_id}.api.baseten.co/environments/production/websocket``),
        ``chain_id`` (``wss://chain-{chain_id}.api.baseten.co/...``), or the
        ``BASETEN_MODEL_ENDPOINT`` environment variable.

        Args:
            model: ``"whisper"`` (Baseten's streaming Whisper) or ``"qwen3-asr"``; the
                defaults below are each model's own.
            api_key: Baseten API key; defaults to ``BASETEN_API_KEY``.
            sample_rate: the rate the server decodes: 16000 for ``pcm_s16le``, 8000 for
                ``pcm_mulaw`` (the default for each). Input frames may have any rate and
                channel count; the plugin resamples them.
            encoding: ``"pcm_s16le"`` (default) or, Whisper only, ``"pcm_mulaw"`` (8 kHz
                mu-law, half the bandwidth).
            mulaw_flavour: the mu-law curve for ``pcm_mulaw``: ``"continuous"`` (torchaudio's,
                which Baseten's Whisper server decodes) or ``"g711"`` (ITU-T G.711).
            buffer_size_seconds: the server's frame, 0.032 s for Whisper, 0.1 s for Qwen3-ASR
                (which also takes the default 0.032 to mean that); any other value is refused.
            language: a language code (Whisper default ``"en"``), or ``"auto"`` to detect
                (Qwen3-ASR's default); Qwen3-ASR also takes its language names (``"English"``).
            language_options: Whisper only: restrict detection to these codes (server
                runtime >= v0.5.0).
            prompt: Whisper only: its initial prompt, to bias it towards a vocabulary.
            enable_partial_transcripts: emit interim transcripts while the user speaks.
            partial_transcript_interval_s: seconds of speech between partials (default 1.0,
                Qwen3-ASR 0.5).
            final_transcript_max_duration_s: longest utterance before the server forces a
                final, 1 to 30 seconds (the server's limit).
            show_word_timestamps: word-level timestamps (default True, Qwen3-ASR False: its
                aligner is opt-in on the deployment); without them each transcript segment
                is one timed chunk.
            vad_threshold, vad_min_silence_duration_ms, vad_speech_pad_ms: the server's VAD
                (defaults 0.5, 300 and 30; Qwen3-ASR 0.5, 500 and 100).
            http_session: the aiohttp session to use; defaults to the job's.
        """
        if model not in WIRES:
            raise ValueError(
                f"model {model!r} is not supported: this plugin speaks Baseten's streaming "
                f"Whisper and Qwen3-ASR protocols ({' or '.join(map(repr, WIRES))})"
            )
        defaults = WIRES[model].defaults
        enc: STTEncoding = encoding if is_given(encoding) else "pcm_s16le"
        if enc not in WIRE_SAMPLE_RATES:
            raise ValueError(f"encoding must be 'pcm_s16le' or 'pcm_mulaw', got {enc!r}")
        if is_given(sample_rate) and sample_rate != WIRE_SAMPLE_RATES[enc]:
            raise ValueError(
                f"Baseten's {model} server decodes {enc} at {WIRE_SAMPLE_RATES[enc]} Hz only; "
                f"got sample_rate={sample_rate}. Input frames may have any rate: the plugin "
                "resamples them."
            )
        check_buffer_size(buffer_size_seconds, model)
        self._opts = STTOptions(
            language=stt_language(model, language if is_given(language) else defaults.language),
            model=model,
            encoding=enc,
            mulaw_flavour=mulaw_flavour,
            language_options=[whisper_language(lang) for lang in language_options or []],
            prompt=prompt,
            enable_partial_transcripts=enable_partial_transcripts,
            partial_transcript_interval_s=(
                partial_transcript_interval_s
                if is_given(partial_transcript_interval_s)
                else defaults.partial_transcript_interval_s
            ),
            final_transcript_max_duration_s=final_transcript_max_duration_s,
            show_word_timestamps=(
                show_word_timestamps
                if is_given(show_word_timestamps)
                else defaults.show_word_timestamps
            ),
            vad_threshold=vad_threshold,
            vad_min_silence_duration_ms=(
                vad_min_silence_duration_ms
                if is_given(vad_min_silence_duration_ms)
                else defaults.vad_min_silence_duration_ms
            ),
            vad_speech_pad_ms=(
                vad_speech_pad_ms if is_given(vad_speech_pad_ms) else defaults.vad_speech_pad_ms
            ),
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
        key = resolve_api_key(api_key)
        self._endpoint = resolve_endpoint(
            model_endpoint=model_endpoint,
            model_id=model_id,
            chain_id=chain_id,
            truss_template=TRUSS_WS_URL,
            chain_template=CHAIN_WS_URL,
            schemes=("wss", "ws"),
        )
        dialer = Dialer(
            self._endpoint, api_key=key, session=http_session, max_msg_size=MAX_MESSAGE_BYTES
        )
        self._streams: weakref.WeakSet[SpeechStream] = weakref.WeakSet()
        # Dialled by prewarm() for the first stream: later ones keep their sockets for long.
        self._spare = SpareSocket(dialer.dial, refill=False)

    @property
    def model(self) -> str:
        return self._opts.model

    @property
    def provider(self) -> str:
        return "Baseten"

    def __repr__(self) -> str:
        return (
            f"baseten.STT(model={self._opts.model!r}, endpoint={self._endpoint!r}, "
            f"language={self._opts.language!r})"
        )

    def prewarm(self) -> None:
        """Dials the WebSocket the next stream will use, in the background (LiveKit's
        AgentSession calls this as the agent starts). Needs a running event loop; failures are
        logged, and the stream then connects by itself."""
        self._spare.prewarm()

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> SpeechStream:
        opts = dataclasses.replace(self._opts, language_options=list(self._opts.language_options))
        if is_given(language):
            opts.language = stt_language(opts.model, language)
        stream = SpeechStream(
            stt=self,
            opts=opts,
            conn_options=conn_options,
            model_endpoint=self._endpoint,
            spare=self._spare,
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
            alternatives=[joined(finals, stream.language)],
        )

    def update_options(self, **changes: Unpack[STTOptionChanges]) -> None:
        """Changes options (any of `STTOptionChanges`) for new streams and for every live
        stream, which reconnect with the new metadata, keeping the audio already pushed."""
        self._opts = apply_changes(self._opts, changes)
        for stream in list(self._streams):
            stream.update_options(**changes)

    async def aclose(self) -> None:
        await asyncio.gather(*(s.aclose() for s in list(self._streams)))
        await self._spare.aclose()
        await super().aclose()


class _End(Enum):
    """How one connection ended, when it ended well."""

    FINISHED = "the input ended and the server finished"
    SWITCH = "options changed: the next connection carries the new metadata"


@dataclasses.dataclass(slots=True)
class _Connection:
    ws: aiohttp.ClientWebSocketResponse
    writer: FrameWriter
    request_id: str
    last_message_at: float
    # Set by the sender once all the audio is out (and Whisper's end_audio); the receiver then
    # drains until the server finished.
    ending: _End | None = None
    end_audio_at: float = 0.0
    health_check_pending: bool = False


class SpeechStream(stt.SpeechStream):
    """A streaming transcription on Baseten's Whisper or Qwen3-ASR WebSocket.

    Every time it reports is on the caller's timeline: `start_time_offset` (read as each event
    is made) plus seconds of the audio pushed, whatever connections carried it.
    """

    def __init__(
        self,
        *,
        stt: STT,
        opts: STTOptions,
        conn_options: APIConnectOptions,
        model_endpoint: str,
        spare: SpareSocket,
    ) -> None:
        # No sample_rate for the base class: the Rust pipeline resamples, not LiveKit's FFI.
        super().__init__(stt=stt, conn_options=conn_options)
        self._opts = opts
        self._wire = wire = WIRES[opts.model]
        self._endpoint = model_endpoint
        self._spare = spare  # where connections come from: dialled ahead or on demand
        self._pipeline: Pipeline | None = None
        self._ledger = AudioLedger(
            max_frames=round(MAX_BUFFERED_AUDIO_S / wire.frame_seconds),
            frame_seconds=wire.frame_seconds,
        )
        self._usage_report_frames = math.ceil(USAGE_REPORT_S / wire.frame_seconds)
        # Qwen3-ASR's commits not yet answered: the ledger index after the frame each rode on,
        # and when it was pushed (its answer is due within conn_options.timeout).
        self._commits: deque[tuple[int, float]] = deque()
        # The live connection's writer, while push_frame may write to it.
        self._writer: FrameWriter | None = None
        self._wakeup = Wakeup()  # the sender's: input ended, options changed, frames held back
        self._options_changed = False
        self._report_errors = True
        self._transcripts = TranscriptEvents(onset=self._spoken_at)
        self._request_id = ""
        self._warned: set[str] = set()  # kinds of server trouble already logged (_warn_once)
        self._time_offset = 0.0
        # The wall-clock time at which the first frame pushed began: where the input's time 0
        # was spoken, for a live microphone.
        self._input_started_at: float | None = None

    @property
    def start_time_offset(self) -> float:
        """Seconds added to every time this stream reports: where its audio starts on the
        caller's timeline (LiveKit's `stt_node` sets it to the time since the session's audio
        input started). Exactly what the caller set: the base class adds the wall-clock time
        between its own retries, which this stream does not use (reconnects keep the times
        on the audio's timeline by themselves)."""
        return self._time_offset

    @start_time_offset.setter
    def start_time_offset(self, value: float) -> None:
        if value < 0:
            raise ValueError("start_time_offset must be non-negative")
        self._time_offset = value

    @property
    def request_id(self) -> str:
        """The id of the current (or last) connection, as set on its events."""
        return self._request_id

    @property
    def language(self) -> str:
        """The language option, as a code (or "auto")."""
        return self._wire.language_code(self._opts.language)

    def __repr__(self) -> str:
        return f"baseten.SpeechStream(endpoint={self._endpoint!r}, request_id={self._request_id!r})"

    # -- input (runs in the caller's context) -------------------------------------------------

    def push_frame(self, frame: rtc.AudioFrame) -> None:
        # Runs once per 20 ms for every stream in the process, cache-cold when there are
        # hundreds: every attribute and call here costs, so the base class's checks run only
        # to raise their errors.
        if self._input_ch.closed or self._event_ch.closed:
            check_input_open(self)
        pipeline = self._pipeline
        if pipeline is None:
            self._input_started_at = time.time() - frame.duration
            pipeline = self._pipeline = self._wire.pipeline(
                self._opts, frame.sample_rate, frame.num_channels
            )
        # The pipeline refuses a change of rate or channels (ValueError).
        pcm = audio_frame_buffer(frame)
        if frames := pipeline.push(pcm, frame.sample_rate, frame.num_channels):
            self._send(frames)

    def flush(self) -> None:
        """Sends the audio pushed so far, the last frame zero-padded. Whisper has no flush
        message (the server's VAD decides where utterances end); Qwen3-ASR commits, and the
        server answers with a final for the audio it holds."""
        check_input_open(self)
        if self._pipeline is not None and (frames := self._pipeline.flush()):
            self._send(frames)
            if self._wire.commits:  # a committing flush returns frames exactly when it commits
                self._commits.append((self._ledger.pushed, time.monotonic()))

    def _send(self, frames: list[bytes]) -> None:
        self._ledger.push(frames)
        writer = self._writer
        if writer is not None and writer.pump():
            self._wakeup.set()  # the socket pushed back: the sender takes over

    def end_input(self) -> None:
        """No more audio: the stream sends what is left, asks the server to finish (Whisper's
        end_audio, Qwen3-ASR's commit), emits the last transcripts and ends (iteration stops by
        itself) once the server answered for all the audio."""
        super().end_input()  # flush() then close the input channel
        self._wakeup.set()

    def update_options(self, **changes: Unpack[STTOptionChanges]) -> None:
        """Reconnects with new metadata. The current connection finishes first (end_audio,
        its last transcripts), and audio pushed meanwhile waits for the new one."""
        self._opts = apply_changes(self._opts, changes)
        self._options_changed = True
        self._writer = None  # audio pushed from now on is for the next connection
        self._wakeup.set()

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
            delay = retry_interval(self._conn_options, failures)
            logger.warning("Baseten STT connection failed (%s); retrying in %.1fs", error, delay)
            failures += 1
            await asyncio.sleep(delay)

    async def _run_connection(self) -> _End:
        acquired = await self._spare.acquire(self._conn_options.timeout)
        self._report_connection_acquired(acquired.acquire_time, acquired.reused)
        ws = acquired.ws
        sender: asyncio.Task[None] | None = None
        receiver: asyncio.Task[_End] | None = None
        try:
            conn = _Connection(
                ws=ws,
                writer=FrameWriter(ws, self._ledger),
                request_id=utils.shortuuid(),
                last_message_at=time.monotonic(),
            )
            self._request_id = conn.request_id
            self._options_changed = False
            try:
                await ws.send_str(self._wire.first_message(self._opts))
            except (aiohttp.ClientError, ConnectionError) as e:
                raise as_api_error(e, "sending metadata") from None
            # The audio no final covered goes first: the server may never have read it.
            self._ledger.open()
            # Commits whose audio is all covered need no answer any more; the others are
            # resent with their audio.
            while self._commits and self._commits[0][0] <= self._ledger.oldest:
                self._commits.popleft()
            self._writer = conn.writer
            sender = asyncio.create_task(self._send_loop(conn), name="baseten.STT.send")
            receiver = asyncio.create_task(self._recv_loop(conn), name="baseten.STT.recv")
            return await self._supervise(conn, sender, receiver)
        finally:
            self._writer = None
            self._ledger.close()
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
            if not self._wire.keepalive_message:
                # No keepalive: silence is normal until a commit waits for its answer.
                if not self._commits:
                    return math.inf
                return max(conn.last_message_at, self._commits[0][1]) + timeout
            # Silence past a health check's time plus the timeout means the server is gone;
            # after end_audio the server has the timeout to finish.
            at = conn.last_message_at + keepalive + timeout
            return min(at, conn.end_audio_at + timeout) if conn.ending is not None else at

        while True:
            # Woken at least every keepalive: a commit made meanwhile brings a deadline.
            wait = min(max(deadline() - time.monotonic(), 0.0), keepalive)
            done, pending = await asyncio.wait(
                pending, timeout=wait, return_when=asyncio.FIRST_COMPLETED
            )
            if receiver in done:
                return receiver.result()
            if sender in done and (error := sender.exception()) is not None:
                await asyncio.wait({receiver}, timeout=CLOSE_GRACE_S)
                if receiver.done() and receiver.exception() is None:
                    return receiver.result()
                raise as_api_error(error, "sending audio")
            if sender in done and self._wire.commits:
                # All the audio is out. A switch needs no answer: what no final covered goes to
                # the next connection. The end waits for the last commit's answer, if any.
                if conn.ending is _End.SWITCH or self._finished():
                    return conn.ending or _End.FINISHED
            if done:
                continue  # the sender finished normally: end_audio is out, a new deadline
            if time.monotonic() < deadline():
                continue  # a message came in meanwhile and moved the deadline
            if conn.ending is _End.SWITCH:
                # What it never confirmed goes to the next connection (the ledger's close).
                logger.warning("Baseten did not finish the old connection; switching anyway")
                return _End.SWITCH
            # Retryable: the audio this connection never confirmed goes to the next one.
            if self._wire.commits:
                raise APITimeoutError(f"Baseten did not answer a commit within {timeout:g}s")
            if conn.ending is _End.FINISHED:
                raise APITimeoutError(
                    f"Baseten did not finish the transcription within {timeout:g}s of end_audio"
                )
            raise APITimeoutError(f"Baseten did not answer for {keepalive + timeout:g}s")

    async def _send_loop(self, conn: _Connection) -> None:
        ws, writer, ledger = conn.ws, conn.writer, self._ledger
        keepalive = min(KEEPALIVE_INTERVAL_S, self._conn_options.timeout)
        while True:
            if not self._options_changed and writer.pump():
                if ledger.broken:
                    raise APIConnectionError(
                        f"Baseten fell more than {MAX_BUFFERED_AUDIO_S:g}s of audio behind",
                        retryable=True,
                    )
                self._report_usage(self._usage_report_frames)
                await writer.writable()
                continue
            self._report_usage(self._usage_report_frames)
            finished = self._input_ch.closed and not ledger.queued
            if finished or self._options_changed:
                conn.ending = _End.FINISHED if finished else _End.SWITCH
                conn.end_audio_at = time.monotonic()
                if self._wire.end_message:
                    await ws.send_str(self._wire.end_message)
                return
            if (
                self._wire.keepalive_message
                and not conn.health_check_pending
                and time.monotonic() - conn.last_message_at >= keepalive
            ):
                conn.health_check_pending = True
                await ws.send_str(self._wire.keepalive_message)
            await self._wakeup.wait(timeout=keepalive / 2)

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
                self._warn_once("binary", "ignoring a binary message from Baseten's STT server")
            elif msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
            ):
                if self._input_ch.closed and self._ledger.settled:
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
        ledger = self._ledger
        try:
            msg = _native.parse_message(
                text,
                self.start_time_offset,
                ledger.origin_s,
                ledger.sent_s,
                qwen3=self._wire.commits,
            )
        except ValueError as e:
            self._warn_once("malformed", "ignoring a malformed message from Baseten: %s", e)
            return None
        if isinstance(msg, _native.Transcription):
            if msg.clamped:
                self._warn_once(
                    "times",
                    "Baseten timed a transcript past the audio it was sent (%.3fs): "
                    "clamping its times",
                    ledger.sent_s,
                )
            if msg.is_final:
                ledger.confirm(msg.audio_end)
                if msg.is_end_of_audio_flush and self._wire.commits:
                    self._commit_answered()
            for event in self._transcripts.of(msg, conn.request_id, self.language):
                self._event_ch.send_nowait(event)
            if self._wire.commits and self._finished():
                return _End.FINISHED
        elif isinstance(msg, _native.EndAudio):
            if msg.status == "finished" and conn.ending is not None and self._wire.end_message:
                ledger.confirm_all()
                return conn.ending
        elif isinstance(msg, _native.ServerError):
            if msg.recoverable:
                kind = f"error {msg.error_type}"
                self._warn_once(kind, "Baseten reported a recoverable error: %s", msg.message)
            else:
                raise server_error(msg)
        elif isinstance(msg, _native.UnknownMessage):
            logger.debug("ignoring a Baseten message of type %r", msg.kind)
        return None

    def _commit_answered(self) -> None:
        """A final answered the oldest commit this connection was sent: the server transcribed
        all the audio before it."""
        if self._commits and self._ledger.sent_through(self._commits[0][0]):
            self._ledger.confirm_until(self._commits.popleft()[0])
        else:
            self._warn_once("commit", "Baseten answered a commit it was not sent")

    def _finished(self) -> bool:
        """Whether the input ended and the server answered for all of it (Qwen3-ASR: every
        commit, the last one included)."""
        return self._input_ch.closed and self._ledger.settled and not self._commits

    def _spoken_at(self, seconds: float) -> float | None:
        """When `seconds` of the live connection's audio was spoken, on the wall clock, taking
        the input for a live microphone's (never later than now). The server reports speech
        only with its first transcript, often at its end: LiveKit wants the onset."""
        if self._input_started_at is None:
            return None
        at = self._input_started_at + self._ledger.input_time(seconds)
        return min(at, time.time())

    def _report_usage(self, at_least: int = 1) -> None:
        """RECOGNITION_USAGE (LiveKit's STT metrics) for the audio sent for the first time
        since the last report, once there is `at_least` that many frames of it."""
        if frames := self._ledger.take_usage(at_least):
            self._event_ch.send_nowait(
                stt.SpeechEvent(
                    stt.SpeechEventType.RECOGNITION_USAGE,
                    request_id=self._request_id,
                    recognition_usage=stt.RecognitionUsage(
                        audio_duration=round(frames * self._ledger.frame_seconds, 6)
                    ),
                )
            )
