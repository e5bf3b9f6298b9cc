# SPDX-License-Identifier: Apache-2.0

"""What `SpeechStream.push_frame` costs the caller per 20 ms frame, on a connected stream,
everything but the socket's own write: the Rust pipeline (resample, rebuffer, encode, frame),
the audio ledger and the frame writer, with a transport that accepts and discards the bytes.

Warm: one stream pushed again and again. Cold: many streams pushed round-robin, as in a
worker process with hundreds of calls, where each push finds its stream out of the caches.

    python benches/push_frame.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import time
from typing import Any

import aiohttp
import numpy as np
from livekit import rtc
from livekit.plugins import baseten

FRAME_MS = 20


class NullTransport(asyncio.Transport):
    """Takes every write at once and keeps nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0

    def write(self, data: Any) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0


class _Writer:
    def __init__(self, transport: NullTransport) -> None:
        self.transport = transport
        self.protocol = self  # aiohttp's BaseProtocol: never paused
        self.writing_paused = False

    async def _drain_helper(self) -> None:
        return None


class NullWebSocket:
    """Enough of an aiohttp client WebSocket for the frame writer."""

    closed = False
    compress = 0

    def __init__(self) -> None:
        self._writer = _Writer(NullTransport())


def connect_null(stream: baseten.SpeechStream) -> NullTransport:
    """Puts `stream` in the state of a live connection whose socket keeps up."""
    from livekit.plugins.baseten._frame_writer import FrameWriter

    ws: Any = NullWebSocket()
    stream._ledger.open()
    stream._writer = FrameWriter(ws, stream._ledger)
    return ws._writer.transport  # type: ignore[no-any-return]


def frame(rate: int) -> rtc.AudioFrame:
    n = rate * FRAME_MS // 1000
    pcm = (8000 * np.sin(2 * math.pi * 440 * np.arange(n) / rate)).astype(np.int16)
    return rtc.AudioFrame(pcm.tobytes(), rate, 1, n)


async def measure(rate: int, streams: int, pushes: int, trials: int) -> float:
    """Median over trials of the mean CPU microseconds per push."""
    async with aiohttp.ClientSession() as http:
        engine = baseten.STT(api_key="k", model_endpoint="ws://127.0.0.1:9/", http_session=http)
        # No connection is ever made: the stream's task is parked before it starts.
        opened = [engine.stream() for _ in range(streams)]
        for s in opened:
            s._task.cancel()
        transports = [connect_null(s) for s in opened]
        audio = frame(rate)
        for s in opened:  # each stream's pipeline is built by its first push: not measured
            s.push_frame(audio)
        results = []
        for _ in range(trials):
            # The thread's CPU time: what the caller pays, whatever else the machine runs.
            start = time.thread_time()
            for i in range(pushes):
                opened[i % streams].push_frame(audio)
            results.append((time.thread_time() - start) / pushes * 1e6)
        assert all(t.written > 0 for t in transports)
        for s in opened:
            await s.aclose()
        return statistics.median(results)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run, for the tests")
    args = parser.parse_args()
    pushes, trials = (500, 3) if args.quick else (20_000, 7)
    print("| input | warm, us per push | cold (500 streams), us per push |")
    print("|---|---:|---:|")
    for rate in (16000, 24000, 48000):
        warm = await measure(rate, 1, pushes, trials)
        cold = await measure(rate, 50 if args.quick else 500, pushes, trials)
        print(f"| {rate // 1000} kHz | {warm:.2f} | {cold:.2f} |")


if __name__ == "__main__":
    asyncio.run(main())
