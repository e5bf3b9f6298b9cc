# SPDX-License-Identifier: Apache-2.0

from typing import Literal

# Baseten Model APIs (OpenAI-compatible). The catalogue changes every few weeks; any other
# model id string is accepted too. `GET https://inference.baseten.co/v1/models` lists the live one.
LLMModels = Literal[
    "openai/gpt-oss-120b",
    "deepseek-ai/DeepSeek-V3.1",
    "deepseek-ai/DeepSeek-V4-Pro",
    "zai-org/GLM-4.7",
    "zai-org/GLM-5",
    "moonshotai/Kimi-K2-Instruct-0905",
    "moonshotai/Kimi-K2-Thinking",
    "moonshotai/Kimi-K2.5",
    "moonshotai/Kimi-K2.6",
    "MiniMaxAI/MiniMax-M2.5",
    "nvidia/Nemotron-120B-A12B",
    "Qwen/Qwen3.8-27B",
]

# The STT wire protocols: Baseten's streaming Whisper and Qwen3-ASR servers.
STTModels = Literal["whisper", "qwen3-asr"]

# The TTS wire protocols: Orpheus (WebSocket or predict) and Qwen3-TTS (WebSocket, voice clones).
TTSModels = Literal["orpheus", "qwen3-tts"]

# Orpheus' English voices; other voice names are passed through to the server.
TTSVoices = Literal["tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe"]

# What Baseten's Whisper server decodes: int16 at 16 kHz, or mu-law at 8 kHz.
STTEncoding = Literal["pcm_s16le", "pcm_mulaw"]

# The mu-law curve of `pcm_mulaw` audio: "continuous" is torchaudio's, which Baseten's Whisper
# server decodes with; "g711" is ITU-T G.711 (telephony, CPython's audioop).
MuLawFlavour = Literal["continuous", "g711"]
