# SPDX-License-Identifier: Apache-2.0

"""Baseten Whisper transcription messages as the server sends them, for the benchmarks."""

from __future__ import annotations

import json

VOCAB = "please send the quarterly report to the office before noon and call me back".split()


def transcription(
    *, num: int, start: float, end: float, words: int, final: bool, first_word: str = ""
) -> str:
    """A `transcription` message with `words` timed words spread over `start`..`end` seconds
    (the first one `first_word` when given), in the full shape of Baseten's server."""
    step = (end - start) / max(words, 1)
    timed = [
        {
            "word": f" {first_word if i == 0 and first_word else VOCAB[i % len(VOCAB)]}",
            "start_time": round(start + i * step, 3),
            "end_time": round(start + (i + 0.8) * step, 3),
            "prob": 0.9,
            "speaker": None,
        }
        for i in range(words)
    ]
    return json.dumps(
        {
            "type": "transcription",
            "is_final": final,
            "transcription_num": num,
            "segments": [
                {
                    "start_time": round(start, 3),
                    "end_time": round(end, 3),
                    "text": "".join(str(w["word"]) for w in timed),
                    "log_prob": -0.2,
                    "word_timestamps": timed,
                    "speaker": None,
                    "speaker_confidence": None,
                    "possible_hallucination": False,
                    "beam_results": None,
                    "language_code": "en",
                    "language_prob": None,
                }
            ],
            "language_code": "en",
            "language_prob": None,
            "diarization": [],
            "timing_info": None,
            "enable_chunk_level_language_detection": False,
            "audio_length_sec": round(end - start, 3),
            "next_partial": None,
            "pipeline_latency": None,
        }
    )
