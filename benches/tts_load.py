# SPDX-License-Identifier: Apache-2.0

"""One TTS load run: N concurrent WebSocket streams in this process, against
benches/bench_server.py's `/tts` (Orpheus) or `/qwen3-tts` (Qwen3-TTS, `--model qwen3-tts`,
with word timestamps), 24 kHz speech at real time. Prints one JSON object.

Runs under either plugin's virtualenv, so the same workload measures both:

    python benches/tts_load.py --plugin baseten|raw --url ws://127.0.0.1:8766/tts \
        --streams 50 --seconds 20
    python benches/tts_load.py --plugin baseten|raw --model qwen3-tts \
        --url ws://127.0.0.1:8766/qwen3-tts --streams 50 --seconds 20

- baseten: `livekit.plugins.baseten.TTS(...).stream()` as installed in this interpreter, one
  sentence per turn, turns back to back until `--seconds` have passed;
- raw: bare WebSockets speaking the same protocol (the floor: what receiving the audio costs;
  for Qwen3-TTS one socket per stream, kept across turns, as the plugins keep theirs).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import statistics
import time
from typing import Any

import aiohttp
import numpy as np

SENTENCE = "The quick brown fox jumps over the lazy dog while the band plays on the pier."
SAMPLE_RATE = 24000


async def raw_turn(http: aiohttp.ClientSession, url: str) -> tuple[int, float]:
    """One synthesis over a bare WebSocket: samples received, time to first audio."""
    start = time.monotonic()
    first = 0.0
    samples = 0
    async with http.ws_connect(url) as ws:
        await ws.send_str(json.dumps({"voice": "tara", "max_tokens": 2000, "buffer_size": 10}))
        for word in SENTENCE.split():
            await ws.send_str(word)
        await ws.send_str("__END__")
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                first = first or time.monotonic() - start
                samples += len(msg.data) // 2
    return samples, first


QWEN3_CONFIG = {"type": "session.config", "task_type": "Base", "response_format": "pcm",
                "stream_audio": True, "speed": 1.0, "voice": "bench", "language": "Auto",
                "timestamp_type": "word", "timestamp_transport_strategy": "sync"}  # fmt: skip


async def raw_qwen3_turn(
    ws: aiohttp.ClientWebSocketResponse, first_turn: bool
) -> tuple[int, float]:
    """One synthesis on a kept Qwen3-TTS socket: samples received, time to first audio."""
    start = time.monotonic()
    first = 0.0
    samples = 0
    if first_turn:
        await ws.send_str(json.dumps(QWEN3_CONFIG))
    for word in SENTENCE.split():
        await ws.send_str(json.dumps({"type": "input.text", "text": f"{word} "}))
    await ws.send_str(json.dumps({"type": "input.done"}))
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.BINARY:
            first = first or time.monotonic() - start
            samples += len(msg.data) // 2
        elif json.loads(msg.data)["type"] == "session.done":
            break
    return samples, first


async def plugin_turn(engine: Any) -> tuple[int, float]:
    """One synthesis through the plugin's stream(): samples received, time to first audio."""
    start = time.monotonic()
    first = 0.0
    samples = 0
    async with engine.stream() as stream:
        stream.push_text(SENTENCE)
        stream.end_input()
        async for ev in stream:
            first = first or time.monotonic() - start
            samples += ev.frame.samples_per_channel
    return samples, first


async def run(args: argparse.Namespace) -> dict[str, Any]:
    ttfb: list[float] = []
    samples = 0
    turns = 0
    async with aiohttp.ClientSession() as http:
        engine: Any = None
        if args.plugin == "baseten":
            from livekit.plugins import baseten

            def make_engine() -> Any:
                if args.model == "qwen3-tts":  # one per stream, as one per agent: its own socket
                    return baseten.TTS(
                        model="qwen3-tts",
                        api_key="bench",
                        model_endpoint=args.url,
                        http_session=http,
                        voice="bench",
                        word_timestamps=True,
                    )
                return baseten.TTS(api_key="bench", model_endpoint=args.url, http_session=http)

            engine = make_engine()
        gc.collect()  # as LiveKit's job processes do once their modules are loaded
        gc.freeze()

        async def one(index: int) -> None:
            nonlocal samples, turns
            await asyncio.sleep(index * 0.02 / args.streams)  # spread the starts, as calls are
            end = time.monotonic() + args.seconds
            qwen3 = args.model == "qwen3-tts"
            mine = make_engine() if engine and qwen3 else engine
            ws = await http.ws_connect(args.url) if not engine and qwen3 else None
            done = 0
            while time.monotonic() < end:
                if mine:
                    turn = plugin_turn(mine)
                elif ws is not None:
                    turn = raw_qwen3_turn(ws, first_turn=not done)
                else:
                    turn = raw_turn(http, args.url)
                got, first = await asyncio.wait_for(turn, 60)
                samples += got
                turns += 1
                done += 1
                ttfb.append(first)
            if ws is not None:
                await ws.close()
            if mine is not engine:
                await mine.aclose()

        # process_time: ns resolution; os.times() counts 10 ms ticks, too coarse for one stream
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.gather(*(one(i) for i in range(args.streams)))
        cpu1, wall1 = time.process_time(), time.monotonic()
        if engine:
            await engine.aclose()
    return {
        "plugin": args.plugin,
        "model": args.model,
        "streams": args.streams,
        "turns": turns,
        "audio_s": samples / SAMPLE_RATE,
        "cpu_s": cpu1 - cpu0,
        "wall_s": wall1 - wall0,
        "ttfb_p50": statistics.median(ttfb) if ttfb else None,
        "ttfb_p99": float(np.percentile(ttfb, 99)) if ttfb else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugin", choices=["baseten", "raw"], required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", choices=["orpheus", "qwen3-tts"], default="orpheus")
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=20)
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
