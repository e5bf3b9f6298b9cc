# SPDX-License-Identifier: Apache-2.0

"""The client side of Baseten's Qwen3-ASR streaming protocol: its options and first message.

The audio goes out as `input_audio_buffer.append` text messages of 100 ms of base64 16 kHz
int16 (built whole in Rust, `_native.AppendPipeline`), and `input_audio_buffer.commit` asks
the server to transcribe what it holds at once; each commit is answered by a final marked
`is_end_of_audio_flush`. The transcripts are Whisper's messages with language names for codes.
The protocol is described in docs/protocols.md.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from livekit.agents.language import LanguageCode

from . import _native

if TYPE_CHECKING:
    from ._whisper_protocol import STTOptions

# Every append message carries 100 ms (the last of a flush is zero-padded).
CHUNK_SECONDS = 0.1
SAMPLE_RATE = 16000


def qwen3_language(language: str) -> str:
    """The name Qwen3-ASR takes for `language`: "auto", a name it lists ("English", any case),
    or a code or BCP 47 tag of one ("en", "en-US" -> "English"). ValueError for any other:
    the server would not recognise it."""
    if language.strip().lower() == "auto":
        return "auto"
    if (code := _native.qwen3_language_code(language)) is not None:
        return _native.qwen3_language_name(code) or language
    if (name := _native.qwen3_language_name(LanguageCode(language).language)) is not None:
        return name
    raise ValueError(
        f"language {language!r} is not one Qwen3-ASR transcribes: give 'auto', a language "
        "code ('en', 'yue') or the name Qwen3-ASR uses ('English', 'Cantonese')"
    )


def check_qwen3_options(opts: STTOptions) -> None:
    """Raises ValueError for the Whisper options Qwen3-ASR has no place for."""
    if opts.encoding != "pcm_s16le":
        raise ValueError(
            f"Qwen3-ASR takes 16 kHz int16 audio only: encoding must be 'pcm_s16le', got "
            f"{opts.encoding!r}"
        )
    if opts.language_options:
        raise ValueError("language_options is a Whisper option: Qwen3-ASR has no such setting")
    if opts.prompt:
        raise ValueError("prompt is a Whisper option: Qwen3-ASR has no such setting")


def check_chunk_size(buffer_size_seconds: float) -> None:
    """Qwen3-ASR's messages carry 100 ms each; the signature's default (Whisper's 0.032) is
    taken to mean that, since it cannot be told from a value not given."""
    if not any(abs(buffer_size_seconds - s) < 1e-9 for s in (CHUNK_SECONDS, 0.032)):
        raise ValueError(
            f"buffer_size_seconds must be {CHUNK_SECONDS} for Qwen3-ASR (its messages carry "
            f"100 ms of audio each), got {buffer_size_seconds}"
        )


def handshake_json(opts: STTOptions) -> str:
    """The first message of a session: Whisper's three groups, without the encoding and sample
    rate (the audio is always 16 kHz int16)."""
    return json.dumps(
        {
            "whisper_params": {
                "audio_language": opts.language,
                "show_word_timestamps": opts.show_word_timestamps,
            },
            "streaming_params": {
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
