# SPDX-License-Identifier: Apache-2.0

"""Speech synthesis for the local server: eSpeak NG from the espeakng-loader wheel (library and
voice data inside), called through ctypes, resampled from 22.05 kHz to the 24 kHz of Orpheus and
Qwen3-TTS, with eSpeak's word events as word timings."""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
from dataclasses import dataclass
from functools import cache
from typing import Any

from livekit import rtc

SAMPLE_RATE = 24000
# Orpheus' voice names, each mapped to a distinct eSpeak voice and variant.
VOICES = {
    "tara": "en-us+f3",
    "leah": "en-us+f2",
    "jess": "en+f4",
    "leo": "en-us+m3",
    "dan": "en+m1",
    "mia": "en+f5",
    "zac": "en-us+m4",
    "zoe": "en+f1",
}
_SYNCHRONOUS = 2
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1


class _Event(ctypes.Structure):
    """espeak_EVENT, from speak_lib.h."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based, in characters
        ("length", ctypes.c_int),  # characters
        ("audio_position", ctypes.c_int),  # ms from the start of the text's audio
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_void_p),  # a union of an int, a pointer and char[8]
    ]


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True)
class Word:
    """A word eSpeak spoke: where it is in the text (characters) and when it starts."""

    start_char: int
    end_char: int
    start_s: float


# eSpeak keeps global state: every call runs on this one thread.
_executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="espeak")


class _Espeak:
    def __init__(self) -> None:
        import espeakng_loader

        self.lib: Any = ctypes.cdll.LoadLibrary(espeakng_loader.get_library_path())
        data = espeakng_loader.get_data_path().encode()
        self.rate = int(self.lib.espeak_Initialize(_SYNCHRONOUS, 0, data, 0))
        if self.rate <= 0:
            raise RuntimeError("eSpeak NG failed to initialise")
        self._chunks: list[bytes] = []
        self._words: list[Word] = []
        self._callback = _CALLBACK(self._on_audio)  # kept alive as long as the library uses it
        self.lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav: Any, samples: int, events: Any) -> int:
        if samples > 0:
            self._chunks.append(ctypes.string_at(wav, samples * 2))
        i = 0
        while events and events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == _EVENT_WORD:
                start = event.text_position - 1
                self._words.append(Word(start, start + event.length, event.audio_position / 1000))
            i += 1
        return 0

    def synthesize(self, text: str, espeak_voice: str) -> tuple[bytes, list[Word]]:
        """int16 mono at `self.rate`, and the words spoken."""
        self._chunks, self._words = [], []
        self.lib.espeak_SetVoiceByName(espeak_voice.encode())
        encoded = text.encode()
        self.lib.espeak_Synth(encoded, len(encoded) + 1, 0, 0, 0, 0, None, None)
        self.lib.espeak_Synchronize()
        return b"".join(self._chunks), self._words


@cache
def _engine() -> _Espeak:
    return _Espeak()


def _synthesize_24k(text: str, espeak_voice: str) -> tuple[bytes, list[Word]]:
    engine = _engine()
    pcm, words = engine.synthesize(text, espeak_voice)
    if not pcm:
        return b"", []
    resampler = rtc.AudioResampler(engine.rate, SAMPLE_RATE, quality=rtc.AudioResamplerQuality.HIGH)
    frame = rtc.AudioFrame(pcm, engine.rate, 1, len(pcm) // 2)
    return b"".join(bytes(f.data) for f in resampler.push(frame) + resampler.flush()), words


async def synthesize(text: str, voice: str) -> bytes:
    """`text` spoken in the Orpheus voice `voice` (tara if unknown), as 24 kHz int16 mono PCM."""
    pcm, _ = await synthesize_timed(text, VOICES.get(voice, VOICES["tara"]))
    return pcm


async def synthesize_timed(text: str, espeak_voice: str) -> tuple[bytes, list[Word]]:
    """`text` spoken by eSpeak voice `espeak_voice` (24 kHz int16 mono), with its words."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor, _synthesize_24k, text, espeak_voice)
