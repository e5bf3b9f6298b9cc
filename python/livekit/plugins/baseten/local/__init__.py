# SPDX-License-Identifier: Apache-2.0

"""A local server speaking Baseten's wire protocols, with real offline engines behind them:
streaming Whisper (tiny.en, English only) with Silero VAD, Orpheus TTS (WebSocket and predict,
spoken by eSpeak NG), Qwen3-TTS (eSpeak NG, with word alignments and registered voices), and
OpenAI-compatible chat completions (a deterministic stand-in).

Install with the `local` extra. Paths (all on one port):

- `ws://HOST:PORT/whisper/websocket`: Baseten streaming Whisper
- `ws://HOST:PORT/qwen3-asr/websocket`: Baseten Qwen3-ASR streaming (the same Whisper tiny.en)
- `ws://HOST:PORT/orpheus/websocket`: Orpheus WebSocket streaming
- `http://HOST:PORT/orpheus/predict`: Orpheus HTTP predict
- `ws://HOST:PORT/qwen3-tts/websocket`: Qwen3-TTS streaming, `voice.add`, `voice.list`
- `http://HOST:PORT/v1`: OpenAI-compatible base URL (`/v1/chat/completions`)
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType

from aiohttp import web

from . import (
    _chat_server,
    _orpheus_server,
    _qwen3_asr_server,
    _qwen3_tts_server,
    _recognizer,
    _whisper_server,
)

logger = logging.getLogger("livekit.plugins.baseten.local")

__all__ = ["LocalServer", "create_app"]


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/whisper/websocket", _whisper_server.handle)
    app.router.add_get("/qwen3-asr/websocket", _qwen3_asr_server.handle)
    app.router.add_get("/orpheus/websocket", _orpheus_server.websocket)
    app.router.add_post("/orpheus/predict", _orpheus_server.predict)
    app[_qwen3_tts_server.VOICES_KEY] = {}  # the voices registered with voice.add
    app.router.add_get("/qwen3-tts/websocket", _qwen3_tts_server.websocket)
    app.router.add_post("/v1/chat/completions", _chat_server.completions)
    return app


class LocalServer:
    """The local Baseten-compatible server on `host` (loopback by default) and `port`
    (0: any free port). Use as an async context manager, or `start()` / `close()`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> LocalServer:
        # Load Whisper before accepting sessions, so the first utterance is not a second late.
        await asyncio.get_running_loop().run_in_executor(_recognizer._executor, _recognizer.load)
        self._runner = web.AppRunner(create_app(), shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._port)
        await site.start()
        # The port asked for, or the one the OS picked for 0.
        self._port = int(self._runner.addresses[0][1])
        logger.info("local Baseten server on %s:%d", self.host, self._port)
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> LocalServer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def port(self) -> int:
        return self._port

    @property
    def whisper_url(self) -> str:
        return f"ws://{self.host}:{self._port}/whisper/websocket"

    @property
    def qwen3_asr_url(self) -> str:
        return f"ws://{self.host}:{self._port}/qwen3-asr/websocket"

    @property
    def tts_websocket_url(self) -> str:
        return f"ws://{self.host}:{self._port}/orpheus/websocket"

    @property
    def tts_predict_url(self) -> str:
        return f"http://{self.host}:{self._port}/orpheus/predict"

    @property
    def qwen3_tts_url(self) -> str:
        return f"ws://{self.host}:{self._port}/qwen3-tts/websocket"

    @property
    def llm_base_url(self) -> str:
        return f"http://{self.host}:{self._port}/v1"
