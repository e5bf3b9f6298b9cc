# SPDX-License-Identifier: Apache-2.0

"""Server-side voice activity detection, as Baseten's server runs it: Silero VAD on every
512-sample frame, with Silero's own iterator rules for the metadata's threshold, minimum
silence and speech padding. The model is the one livekit-plugins-silero ships."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

WINDOW = 512
SAMPLE_RATE = 16000


@cache
def _session() -> Any:
    from livekit.plugins.silero.onnx_model import new_inference_session

    return new_inference_session(force_cpu=True)


@dataclass
class VadEvent:
    """Speech started or ended at `sample` (an index into the session's 16 kHz audio)."""

    kind: str  # "start" | "end"
    sample: int


class VadIterator:
    """Silero's VADIterator: speech starts when a window's probability reaches `threshold`
    (padded back by `speech_pad_ms`), and ends after `min_silence_ms` of windows below
    `threshold - 0.15` (padded forward)."""

    def __init__(self, threshold: float, min_silence_ms: int, speech_pad_ms: int) -> None:
        from livekit.plugins.silero.onnx_model import OnnxModel

        self._model = OnnxModel(onnx_session=_session(), sample_rate=SAMPLE_RATE)
        self._threshold = threshold
        self._min_silence = SAMPLE_RATE * min_silence_ms // 1000
        self._pad = SAMPLE_RATE * speech_pad_ms // 1000
        self._samples = 0
        self._temp_end = 0
        self.triggered = False

    def __call__(self, window: np.ndarray) -> VadEvent | None:
        """One window of 512 float32 samples; returns a start or end when one happens."""
        probability = self._model(window)
        self._samples += WINDOW
        if probability >= self._threshold:
            self._temp_end = 0
            if not self.triggered:
                self.triggered = True
                return VadEvent("start", max(0, self._samples - self._pad - WINDOW))
            return None
        if self.triggered and probability < self._threshold - 0.15:
            if not self._temp_end:
                self._temp_end = self._samples
            if self._samples - self._temp_end >= self._min_silence:
                end = self._temp_end + self._pad - WINDOW
                self._temp_end = 0
                self.triggered = False
                return VadEvent("end", min(end, self._samples))
        return None
