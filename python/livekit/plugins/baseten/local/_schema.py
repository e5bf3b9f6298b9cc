# SPDX-License-Identifier: Apache-2.0

"""What Baseten's streaming Whisper server accepts as its first message.

The server validates it with pydantic models that forbid unknown keys at every level
(`StreamingWhisperInput`, `extra="forbid"`); a refused message closes the socket with 1011.
No heavy imports here: the tests' protocol fake uses this module too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WHISPER_PARAMS = frozenset(
    {
        "prompt", "output_language", "audio_language", "language_detection_only",
        "language_options", "use_dynamic_preprocessing", "use_missing_chunk_retry",
        "missing_chunk_wpm_threshold", "show_word_timestamps", "enable_vad",
        "whisper_sampling_params", "enable_diarization", "diarization_granularity", "prefix",
        "show_beam_results", "enable_chunk_level_language_detection",
    }
)  # fmt: skip
STREAMING_PARAMS = frozenset(
    {
        "encoding", "sample_rate", "enable_partial_transcripts",
        "partial_transcript_interval_s", "final_transcript_max_duration_s",
        "prioritize_latency", "skip_partial_if_hallucination", "include_pipeline_latency_metric",
    }
)  # fmt: skip
VAD_PARAMS = frozenset({"threshold", "min_silence_duration_ms", "speech_pad_ms", "sampling_rate"})
TOP_LEVEL = frozenset(
    {
        "whisper_params", "streaming_params", "streaming_vad_config",
        "streaming_diarization_config", "diarization_config", "stream_id", "include_timing_info",
    }
)  # fmt: skip
# Bytes per binary message: 512 samples once at 16 kHz.
FRAME_BYTES = {"pcm_s16le": 1024, "pcm_mulaw": 256}
WIRE_RATES = {"pcm_s16le": 16000, "pcm_mulaw": 8000}
MAX_FINAL_TRANSCRIPT_S = 30


class MetadataError(ValueError):
    """A first message the real server would refuse."""


@dataclass(frozen=True)
class SessionConfig:
    """The parts of the metadata a session acts on, with the server's defaults."""

    language: str
    encoding: str
    show_word_timestamps: bool
    prompt: str
    partials: bool
    partial_interval_s: float
    max_final_s: float
    vad_threshold: float
    vad_min_silence_ms: int
    vad_speech_pad_ms: int


def parse_metadata(meta: Any) -> SessionConfig:
    """Validates a first message as the real server does and reads what a session uses."""
    if not isinstance(meta, dict):
        raise MetadataError("metadata is not a JSON object")
    parts = {"<top>": (meta, TOP_LEVEL)}
    for name, allowed in (
        ("whisper_params", WHISPER_PARAMS),
        ("streaming_params", STREAMING_PARAMS),
        ("streaming_vad_config", VAD_PARAMS),
    ):
        part = meta.get(name, {})
        if not isinstance(part, dict):
            raise MetadataError(f"{name} is not an object")
        parts[name] = (part, allowed)
    for name, (part, allowed) in parts.items():
        if unknown := sorted(set(part) - allowed):
            raise MetadataError(f"unknown keys in {name}: {unknown}")
    whisper, streaming, vad = (
        parts[n][0] for n in ("whisper_params", "streaming_params", "streaming_vad_config")
    )
    encoding = streaming.get("encoding", "pcm_s16le")
    if encoding not in FRAME_BYTES:
        raise MetadataError(f"unsupported encoding {encoding!r}")
    try:
        return SessionConfig(
            language=str(whisper.get("audio_language", "en")),
            encoding=encoding,
            show_word_timestamps=bool(whisper.get("show_word_timestamps", False)),
            prompt=str(whisper.get("prompt", "")),
            partials=bool(streaming.get("enable_partial_transcripts", False)),
            partial_interval_s=float(streaming.get("partial_transcript_interval_s", 0.5)),
            # The server clamps longer cuts to 30 s.
            max_final_s=min(
                float(streaming.get("final_transcript_max_duration_s", 30)),
                MAX_FINAL_TRANSCRIPT_S,
            ),
            vad_threshold=float(vad.get("threshold", 0.5)),
            vad_min_silence_ms=int(vad.get("min_silence_duration_ms", 300)),
            vad_speech_pad_ms=int(vad.get("speech_pad_ms", 0)),
        )
    except (TypeError, ValueError) as e:
        raise MetadataError(f"invalid metadata value: {e}") from None
