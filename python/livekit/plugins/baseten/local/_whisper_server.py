# SPDX-License-Identifier: Apache-2.0

"""Baseten's streaming Whisper protocol, served by a real (small) Whisper. One
`WhisperSession` per WebSocket; the protocol is described in docs/protocols.md."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from .. import _native
from . import _recognizer
from ._schema import FRAME_BYTES, MetadataError, SessionConfig, parse_metadata
from ._vad import SAMPLE_RATE, WINDOW, VadIterator

logger = logging.getLogger("livekit.plugins.baseten.local")

# The real server drops partial requests when this many transcriptions are queued. Here one
# thread serves every session, so partials also give way whenever any transcription waits:
# finals (and end_audio's deadline) come first.
MAX_QUEUED = 10
MAX_PENDING_FOR_PARTIALS = 1
# Audio before the VAD's start handed to Whisper too: the VAD starts an utterance at the first
# window it scores as speech (padded by speech_pad_ms), which can be just after a soft onset
# ("Could" loses its "C"); Baseten's large model copes, tiny.en needs the context.
CONTEXT_SAMPLES = SAMPLE_RATE // 4


@dataclass(frozen=True)
class _Job:
    start: int  # sample index of the utterance's start
    end: int
    final: bool
    flush: bool = False


async def handle(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(max_msg_size=1 << 20)
    await ws.prepare(request)
    first = await ws.receive()
    try:
        if first.type != WSMsgType.TEXT:
            raise MetadataError("the first message must be the JSON metadata")
        config = parse_metadata(json.loads(first.data))
    except (MetadataError, json.JSONDecodeError) as e:
        # The real server raises before its stream processor exists: no error message, 1011.
        logger.info("whisper session refused: %s", e)
        await ws.close(code=1011, message=b"invalid metadata")
        return ws
    if config.language not in ("en", "auto"):
        await _send_error(
            ws,
            "CONFIGURATION_ERROR",
            f"this local server transcribes English only (Whisper tiny.en), not "
            f"{config.language!r}",
            recoverable=False,
        )
        await ws.close(code=1011)
        return ws
    session = WhisperSession(ws, config)
    logger.info("whisper session opened: %s", config)
    started = time.monotonic()
    try:
        await session.run()
    except ConnectionError:
        pass  # the client went away mid-reply: its session is over, nothing to report
    finally:
        logger.info(
            "whisper session closed after %.1fs: %.1fs of audio, %d transcripts",
            time.monotonic() - started,
            session.samples / SAMPLE_RATE,
            session.sent,
        )
    return ws


class WhisperSession:
    def __init__(self, ws: web.WebSocketResponse, config: SessionConfig) -> None:
        self.ws, self.cfg = ws, config
        self.vad = VadIterator(
            config.vad_threshold, config.vad_min_silence_ms, config.vad_speech_pad_ms
        )
        # mu-law arrives at 8 kHz: decoded, then brought to 16 kHz by the plugin's own pipeline.
        self.upsample = (
            _native.SendPipeline(8000, 1, "pcm_s16le") if config.encoding == "pcm_mulaw" else None
        )
        self.audio = np.zeros(0, dtype=np.float32)  # kept from sample `audio_start` on
        self.audio_start = 0
        self.samples = 0
        self.utterance: int | None = None
        self.last_partial = 0
        self.num = 0
        self.sent = 0
        # (job, index of the audio's first sample, audio)
        self.jobs: asyncio.Queue[tuple[_Job, int, np.ndarray]] = asyncio.Queue()

    async def run(self) -> None:
        worker = asyncio.create_task(self._work())
        try:
            async for msg in self.ws:
                if worker.done():
                    break  # the worker could not send: the client is gone
                if msg.type == WSMsgType.BINARY:
                    if not await self._on_audio(msg.data):
                        return
                elif msg.type == WSMsgType.TEXT:
                    await self._on_control(msg.data)
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await worker

    async def _on_audio(self, data: bytes) -> bool:
        expected = FRAME_BYTES[self.cfg.encoding]
        if len(data) != expected:
            samples = len(data) * 512 // expected
            await _send_error(
                self.ws,
                "AUDIO_PROCESSING_ERROR",
                f"Provided number of samples is {samples} (Supported values: 256 for 8000 "
                "sample rate, 512 for 16000)",
                recoverable=False,
            )
            await self.ws.close(code=1011)
            return False
        if self.upsample is None:
            frames = [data]
        else:
            frames = self.upsample.push(_native.mulaw_decode(data, "continuous"))
        for frame in frames:
            window = np.frombuffer(frame, dtype=np.int16).astype(np.float32) / 32768.0
            self._on_window(window)
        return True

    def _on_window(self, window: np.ndarray) -> None:
        self.audio = np.concatenate([self.audio, window])
        self.samples += WINDOW
        event = self.vad(window)
        if event is not None and event.kind == "start":
            self.utterance = self.last_partial = event.sample
        elif event is not None and event.kind == "end" and self.utterance is not None:
            self._queue(_Job(self.utterance, max(event.sample, self.utterance), final=True))
            self.utterance = None
        elif self.utterance is not None:
            if self.samples - self.utterance >= self.cfg.max_final_s * SAMPLE_RATE:
                self._queue(_Job(self.utterance, self.samples, final=True))
                self.utterance = self.last_partial = self.samples
            elif (
                self.cfg.partials
                and self.samples - self.last_partial >= self.cfg.partial_interval_s * SAMPLE_RATE
            ):
                self._queue(_Job(self.utterance, self.samples, final=False))
                self.last_partial = self.samples
        if self.utterance is None:
            # Out of speech only the padding before a possible start is needed.
            keep = SAMPLE_RATE * self.cfg.vad_speech_pad_ms // 1000 + 2 * WINDOW + CONTEXT_SAMPLES
            if len(self.audio) > keep:
                self.audio_start += len(self.audio) - keep
                self.audio = self.audio[-keep:]

    def _queue(self, job: _Job) -> None:
        if not job.final and (
            self.jobs.qsize() >= MAX_QUEUED or _recognizer.pending() > MAX_PENDING_FOR_PARTIALS
        ):
            return  # load shedding, as the real server does for partials
        first = max(self.audio_start, job.start - CONTEXT_SAMPLES)
        audio = self.audio[first - self.audio_start : job.end - self.audio_start].copy()
        self.jobs.put_nowait((job, first, audio))

    async def _work(self) -> None:
        while True:
            job, first, audio = await self.jobs.get()
            segments = await _recognizer.transcribe(audio, self.cfg.prompt)
            await self.ws.send_json(self._result(job, first, segments))
            self.sent += 1
            self.jobs.task_done()

    def _result(self, job: _Job, first: int, segments: list[_recognizer.Segment]) -> dict[str, Any]:
        offset = first / SAMPLE_RATE  # the recognizer's times count from the audio's start

        def seg(s: _recognizer.Segment) -> dict[str, Any]:
            words = [
                {
                    "word": w.text,
                    "start_time": round(offset + w.start, 3),
                    "end_time": round(offset + w.end, 3),
                    "prob": round(w.probability, 4),
                    "speaker": None,
                }
                for w in s.words
            ]
            return {
                "start_time": round(offset + s.start, 3),
                "end_time": round(offset + s.end, 3),
                "text": s.text,
                "log_prob": round(s.avg_logprob, 4),
                "word_timestamps": words if self.cfg.show_word_timestamps else [],
                "speaker": None,
                "speaker_confidence": None,
                "possible_hallucination": False,
                "beam_results": None,
                "language_code": "en",
                "language_prob": None,
            }

        message: dict[str, Any] = {
            "type": "transcription",
            "is_final": job.final,
            "transcription_num": self.num,
            "segments": [seg(s) for s in segments],
            "language_code": "en",
            "language_prob": None,
            "diarization": [],
            "timing_info": None,
            "enable_chunk_level_language_detection": False,
            "audio_length_sec": round((job.end - job.start) / SAMPLE_RATE, 3),
            "next_partial": None,
            "pipeline_latency": None,
        }
        if job.flush:
            message["is_end_of_audio_flush"] = True
        if job.final:
            self.num += 1
        return message

    async def _on_control(self, text: str) -> None:
        try:
            message = json.loads(text)
            kind = message["type"]
            trace_id = message.get("trace_id")
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            await _send_error(self.ws, "WEBSOCKET_ERROR", "Failed to validate text message", True)
            return
        if kind == "health_check":
            body: dict[str, Any] = {"healthy": True}
            if (message.get("body") or {}).get("get_partial_interval"):
                body["partial_interval"] = self.cfg.partial_interval_s
            await self.ws.send_json(
                {
                    "type": "health_check",
                    "trace_id": trace_id,
                    "timestamp": time.time(),
                    "body": body,
                }
            )
        elif kind == "end_audio":
            await self.ws.send_json(
                {
                    "type": "end_audio",
                    "trace_id": trace_id,
                    "timestamp": None,
                    "body": {"status": "acknowledged"},
                }
            )
            if self.upsample is not None:  # the resampler's tail
                for frame in self.upsample.flush(pad=True):
                    self._on_window(
                        np.frombuffer(frame, dtype=np.int16).astype(np.float32) / 32768.0
                    )
            if self.utterance is not None:  # only a buffer in speech is flushed
                self._queue(_Job(self.utterance, self.samples, final=True, flush=True))
                self.utterance = None
            await self.jobs.join()
            await self.ws.send_json(
                {
                    "type": "end_audio",
                    "trace_id": None,
                    "timestamp": None,
                    "body": {"status": "finished"},
                }
            )
        else:
            await _send_error(self.ws, "WEBSOCKET_ERROR", "Failed to validate text message", True)


async def _send_error(
    ws: web.WebSocketResponse, error_type: str, message: str, recoverable: bool
) -> None:
    await ws.send_json(
        {
            "type": "error",
            "trace_id": None,
            "timestamp": None,
            "body": {
                "error_type": error_type,
                "message": message,
                "stream_id": "local",
                "recoverable": recoverable,
                "timestamp": time.time(),
            },
        }
    )
