# SPDX-License-Identifier: Apache-2.0

"""Speech synthesis for the local server: eSpeak NG from the espeakng-loader wheel (library and
voice data inside), called through ctypes, resampled from 22.05 kHz to Orpheus' 24 kHz."""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
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
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)
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
        self._callback = _CALLBACK(self._on_audio)  # kept alive as long as the library uses it
        self.lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav: Any, samples: int, events: Any) -> int:
        if samples > 0:
            self._chunks.append(ctypes.string_at(wav, samples * 2))
        return 0

    def synthesize(self, text: str, voice: str) -> bytes:
        """int16 mono at `self.rate`."""
        self._chunks = []
        self.lib.espeak_SetVoiceByName(VOICES.get(voice, VOICES["tara"]).encode())
        encoded = text.encode()
        self.lib.espeak_Synth(encoded, len(encoded) + 1, 0, 0, 0, 0, None, None)
        self.lib.espeak_Synchronize()
        return b"".join(self._chunks)


@cache
def _engine() -> _Espeak:
    return _Espeak()


def _synthesize_24k(text: str, voice: str) -> bytes:
    engine = _engine()
    pcm = engine.synthesize(text, voice)
    if not pcm:
        return b""
    resampler = rtc.AudioResampler(engine.rate, SAMPLE_RATE, quality=rtc.AudioResamplerQuality.HIGH)
    frame = rtc.AudioFrame(pcm, engine.rate, 1, len(pcm) // 2)
    return b"".join(bytes(f.data) for f in resampler.push(frame) + resampler.flush())


async def synthesize(text: str, voice: str) -> bytes:
    """`text` spoken in `voice`, as 24 kHz int16 mono PCM."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor, _synthesize_24k, text, voice)
