# SPDX-License-Identifier: Apache-2.0

"""The client side of Baseten's streaming Whisper protocol: options, the messages sent, and
what the server's errors mean.

The server validates the first message with pydantic models that forbid unknown keys at every
level, so exactly the documented keys are sent, and optional ones only when set. The protocol
is described in docs/protocols.md.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from livekit.agents import APIConnectionError, APIError, APIStatusError
from livekit.agents.language import LanguageCode
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import is_given
from typing_extensions import TypedDict

from . import _native
from ._qwen3_protocol import check_chunk_size, check_qwen3_options, qwen3_language
from .models import MuLawFlavour, STTEncoding, STTModels

# Every wire frame is 32 ms: 512 samples once the server has the audio at 16 kHz.
FRAME_SECONDS = 0.032
WIRE_SAMPLE_RATES: dict[str, int] = {"pcm_s16le": 16000, "pcm_mulaw": 8000}
# The server cuts an utterance at this many seconds whatever it is asked (and warns).
MAX_FINAL_TRANSCRIPT_S = 30

END_AUDIO = json.dumps({"type": "end_audio"})
HEALTH_CHECK = json.dumps({"type": "health_check"})


@dataclass
class STTOptions:
    """A stream's options, for either protocol (`model`); `language` as that protocol names
    it (Whisper "en", Qwen3-ASR "English")."""

    language: str
    model: STTModels = "whisper"
    encoding: STTEncoding = "pcm_s16le"
    mulaw_flavour: MuLawFlavour = "continuous"
    language_options: list[str] = field(default_factory=list)
    prompt: str | None = None
    enable_partial_transcripts: bool = True
    partial_transcript_interval_s: float = 1.0
    final_transcript_max_duration_s: int = MAX_FINAL_TRANSCRIPT_S
    show_word_timestamps: bool = True
    vad_threshold: float = 0.5
    vad_min_silence_duration_ms: int = 300
    vad_speech_pad_ms: int = 30

    @property
    def sample_rate(self) -> int:
        return WIRE_SAMPLE_RATES[self.encoding]


def whisper_language(language: str) -> str:
    """Whisper wants a bare language code ("en"), or "auto" to detect."""
    code = LanguageCode(language)
    return "auto" if code == "auto" else code.language


def stt_language(model: STTModels, language: str) -> str:
    """`language` as `model`'s server wants it."""
    return qwen3_language(language) if model == "qwen3-asr" else whisper_language(language)


def check_options(opts: STTOptions) -> None:
    """Raises ValueError for options the server would refuse or misread."""
    if opts.model == "qwen3-asr":
        check_qwen3_options(opts)
    if opts.encoding not in WIRE_SAMPLE_RATES:
        raise ValueError(f"encoding must be 'pcm_s16le' or 'pcm_mulaw', got {opts.encoding!r}")
    if opts.mulaw_flavour not in ("continuous", "g711"):
        raise ValueError(
            f"mulaw_flavour must be 'continuous' or 'g711', got {opts.mulaw_flavour!r}"
        )
    if not 0.0 <= opts.vad_threshold <= 1.0:
        raise ValueError(f"vad_threshold must be between 0 and 1, got {opts.vad_threshold}")
    if opts.vad_min_silence_duration_ms < 0 or opts.vad_speech_pad_ms < 0:
        raise ValueError("vad_min_silence_duration_ms and vad_speech_pad_ms must be >= 0")
    if opts.partial_transcript_interval_s <= 0:
        raise ValueError("partial_transcript_interval_s must be positive")
    if not 0 < opts.final_transcript_max_duration_s <= MAX_FINAL_TRANSCRIPT_S:
        raise ValueError(
            "final_transcript_max_duration_s must be between 1 and "
            f"{MAX_FINAL_TRANSCRIPT_S} (the server's limit), got "
            f"{opts.final_transcript_max_duration_s}"
        )


def metadata_json(opts: STTOptions) -> str:
    """The first message of a session (`StreamingWhisperInput`)."""
    whisper: dict[str, object] = {
        "audio_language": opts.language,
        "show_word_timestamps": opts.show_word_timestamps,
    }
    # Runtimes older than v0.5.0 reject language_options: only send it when it says something.
    if opts.language_options:
        whisper["language_options"] = opts.language_options
    if opts.prompt:
        whisper["prompt"] = opts.prompt
    return json.dumps(
        {
            "whisper_params": whisper,
            "streaming_params": {
                "encoding": opts.encoding,
                "sample_rate": opts.sample_rate,
                "enable_partial_transcripts": opts.enable_partial_transcripts,
                "partial_transcript_interval_s": opts.partial_transcript_interval_s,
                "final_transcript_max_duration_s": opts.final_transcript_max_duration_s,
            },
            "streaming_vad_config": {
                "threshold": opts.vad_threshold,
                "min_silence_duration_ms": opts.vad_min_silence_duration_ms,
                "speech_pad_ms": opts.vad_speech_pad_ms,
            },
        }
    )


class STTOptionChanges(TypedDict, total=False):
    """What `update_options` may change; the existing plugin's six, plus `prompt`."""

    vad_threshold: NotGivenOr[float]
    vad_min_silence_duration_ms: NotGivenOr[int]
    vad_speech_pad_ms: NotGivenOr[int]
    language: NotGivenOr[str]
    language_options: NotGivenOr[list[str]]
    prompt: NotGivenOr[str | None]
    buffer_size_seconds: NotGivenOr[float]


def check_buffer_size(buffer_size_seconds: float, model: STTModels = "whisper") -> None:
    if model == "qwen3-asr":
        return check_chunk_size(buffer_size_seconds)
    if abs(buffer_size_seconds - FRAME_SECONDS) > 1e-9:
        raise ValueError(
            f"buffer_size_seconds must be {FRAME_SECONDS} (Baseten's server takes frames "
            f"of exactly 512 samples at 16 kHz), got {buffer_size_seconds}"
        )


def apply_changes(opts: STTOptions, changes: STTOptionChanges) -> STTOptions:
    """A validated copy of `opts` with `changes` (NOT_GIVEN values are ignored)."""
    new = dataclasses.replace(opts, language_options=list(opts.language_options))
    if is_given(size := changes.get("buffer_size_seconds", NOT_GIVEN)):
        check_buffer_size(size, opts.model)
    if is_given(threshold := changes.get("vad_threshold", NOT_GIVEN)):
        new.vad_threshold = threshold
    if is_given(silence := changes.get("vad_min_silence_duration_ms", NOT_GIVEN)):
        new.vad_min_silence_duration_ms = silence
    if is_given(pad := changes.get("vad_speech_pad_ms", NOT_GIVEN)):
        new.vad_speech_pad_ms = pad
    if is_given(language := changes.get("language", NOT_GIVEN)):
        new.language = stt_language(opts.model, language)
    if is_given(options := changes.get("language_options", NOT_GIVEN)):
        new.language_options = [whisper_language(code) for code in options]
    if is_given(prompt := changes.get("prompt", NOT_GIVEN)):
        new.prompt = prompt
    check_options(new)
    return new


def server_error(msg: _native.ServerError) -> APIError:
    """An unrecoverable `error` message. Audio or configuration the server refuses will be
    refused again: not retryable. Anything else (stream, transcription, socket trouble on the
    server) may pass on a new connection."""
    kind = f" {msg.error_type}" if msg.error_type else ""
    text = f"Baseten error{kind}: {msg.message}"
    if msg.error_type in ("AUDIO_PROCESSING_ERROR", "CONFIGURATION_ERROR"):
        return APIStatusError(text, status_code=400, body=msg.message, retryable=False)
    return APIConnectionError(text, retryable=True)
