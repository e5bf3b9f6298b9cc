# SPDX-License-Identifier: Apache-2.0

"""Baseten plugin for LiveKit Agents: Whisper STT, Orpheus and Qwen3-TTS, Baseten's LLM APIs.

The per-stream audio and transcript hot paths run in a Rust extension (`_native`).
"""

import os

from livekit.agents import Plugin

from . import _native
from ._voices import list_voices, register_voice
from .llm import LLM
from .log import logger
from .models import LLMModels, STTModels, TTSModels, TTSVoices
from .stt import STT, SpeechStream
from .tts import TTS, SynthesizeStream
from .version import __version__

__all__ = [
    "LLM",
    "STT",
    "TTS",
    "LLMModels",
    "STTModels",
    "SpeechStream",
    "SynthesizeStream",
    "TTSModels",
    "TTSVoices",
    "__version__",
    "list_voices",
    "logger",
    "register_voice",
]


class BasetenPlugin(Plugin):
    def __init__(self) -> None:
        super().__init__(__name__, __version__, __package__, logger)


Plugin.register_plugin(BasetenPlugin())
# LiveKit's job processes are forked (from a forkserver, or the worker itself): each must draw
# its own WebSocket masking keys, not continue its parent's sequence as its siblings do.
os.register_at_fork(after_in_child=_native.reseed_masks)

# Cleanup docs of unexported modules
_module = dir()
NOT_IN_ALL = [m for m in _module if m not in __all__]

__pdoc__ = {}

for n in NOT_IN_ALL:
    __pdoc__[n] = False
