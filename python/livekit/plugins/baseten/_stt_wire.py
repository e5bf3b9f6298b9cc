# SPDX-License-Identifier: Apache-2.0

"""What the speech stream does differently for each of Baseten's STT protocols.

One stream machinery (ledger, writer, reconnection, deadlines, events) serves both; a `Wire`
holds the few things that differ: the first message, the audio pipeline, how the end of the
audio is marked and answered, and the defaults of the options.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from typing_extensions import Buffer

from . import _native
from ._qwen3_protocol import CHUNK_SECONDS, handshake_json
from ._whisper_protocol import END_AUDIO, FRAME_SECONDS, HEALTH_CHECK, STTOptions, metadata_json
from .models import STTModels


class Pipeline(Protocol):
    """Audio in, whole WebSocket messages out (`_native.SendPipeline`, `AppendPipeline`)."""

    def push(
        self, pcm: Buffer, sample_rate: int | None = None, channels: int | None = None
    ) -> list[bytes]: ...
    def flush(self) -> list[bytes]: ...


@dataclass(frozen=True)
class Defaults:
    """The option defaults of one model, each its deployments' own."""

    language: str
    partial_transcript_interval_s: float
    show_word_timestamps: bool
    vad_min_silence_duration_ms: int
    vad_speech_pad_ms: int


@dataclass(frozen=True)
class Wire:
    model: STTModels
    # Seconds of audio in each message the pipeline makes: the ledger's frame.
    frame_seconds: float
    first_message: Callable[[STTOptions], str]
    pipeline: Callable[[STTOptions, int, int], Pipeline]
    # Whisper marks the end of the audio with end_audio, answered by "finished", and keeps an
    # idle connection checked with health_check. Qwen3-ASR has neither: the flush that ends
    # the input commits, and the final that answers the last commit ends the connection.
    end_message: str | None
    keepalive_message: str | None
    # The language code of the option's value (Qwen3-ASR's names become codes).
    language_code: Callable[[str], str]
    defaults: Defaults

    @property
    def commits(self) -> bool:
        """Whether a flush commits (and each commit is answered by a final)."""
        return self.end_message is None


def _whisper_pipeline(opts: STTOptions, rate: int, channels: int) -> Pipeline:
    return _native.SendPipeline(rate, channels, opts.encoding, opts.mulaw_flavour, websocket=True)


def _qwen3_pipeline(opts: STTOptions, rate: int, channels: int) -> Pipeline:
    return _native.AppendPipeline(rate, channels, websocket=True)


WHISPER = Wire(
    model="whisper",
    frame_seconds=FRAME_SECONDS,
    first_message=metadata_json,
    pipeline=_whisper_pipeline,
    end_message=END_AUDIO,
    keepalive_message=HEALTH_CHECK,
    language_code=lambda language: language,
    defaults=Defaults("en", 1.0, True, 300, 30),
)

QWEN3_ASR = Wire(
    model="qwen3-asr",
    frame_seconds=CHUNK_SECONDS,
    first_message=handshake_json,
    pipeline=_qwen3_pipeline,
    end_message=None,
    keepalive_message=None,
    language_code=lambda name: _native.qwen3_language_code(name) or name,
    defaults=Defaults("auto", 0.5, False, 500, 100),
)

WIRES: dict[str, Wire] = {wire.model: wire for wire in (WHISPER, QWEN3_ASR)}
