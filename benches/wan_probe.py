# SPDX-License-Identifier: Apache-2.0

"""One latency probe, under either plugin's interpreter, against bench_server.py across the
emulated WAN (tests/wan.py). Prints one JSON object: the samples, in seconds.

    python benches/wan_probe.py --plugin baseten|raw --what tts|tts-prewarm|stt \
        --url ws://127.0.0.1:9766/tts --trials 20

- tts: time from the first text (pushed into a new stream) to the first audio frame;
  tts-prewarm: the same after `TTS.prewarm()`, with a second between syntheses (the pause
  between an agent's turns), in which a warm plugin dials the next socket;
- stt: a stream of `--trials` seconds of speech pushed at real time; for each final, the time
  from the push that completed the audio it covers (the end of that speech) to the event;
- raw (tts only): a bare WebSocket, opened in advance: the server's own first byte plus one
  round trip, the floor a warm plugin can reach.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import time
from typing import Any

import aiohttp
from livekit import rtc

SENTENCE = "The quick brown fox jumps over the lazy dog. "
GAP_S = 1.0  # between syntheses


async def tts_plugin(args: argparse.Namespace, http: aiohttp.ClientSession) -> list[float]:
    from livekit.plugins import baseten

    engine: Any = baseten.TTS(api_key="bench", model_endpoint=args.url, http_session=http)
    samples = []
    for _ in range(args.trials):
        if args.what == "tts-prewarm":
            engine.prewarm()
        await asyncio.sleep(GAP_S)
        start = time.perf_counter()
        stream = engine.stream()
        stream.push_text(SENTENCE)
        stream.end_input()
        first = None
        async for _ev in stream:
            first = first or time.perf_counter() - start
        await stream.aclose()
        assert first is not None
        samples.append(first)
    await engine.aclose()
    return samples


async def tts_raw(args: argparse.Namespace, http: aiohttp.ClientSession) -> list[float]:
    samples = []
    for _ in range(args.trials):
        async with http.ws_connect(args.url) as ws:
            await asyncio.sleep(GAP_S)
            start = time.perf_counter()
            await ws.send_str(json.dumps({"voice": "tara", "max_tokens": 2000, "buffer_size": 10}))
            for word in SENTENCE.split():
                await ws.send_str(word)
            await ws.send_str("__END__")
            first = None
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    first = first or time.perf_counter() - start
        assert first is not None
        samples.append(first)
    return samples


async def stt_plugin(args: argparse.Namespace, http: aiohttp.ClientSession) -> list[float]:
    from livekit.plugins import baseten

    engine: Any = baseten.STT(api_key="bench", model_endpoint=args.url, http_session=http)
    stream = engine.stream()
    rate, frame_samples = 16000, 320
    pushed_at: list[float] = []  # when each 20 ms input frame was pushed
    finals: list[tuple[float, float]] = []  # (event time, audio end of the final)

    async def receive() -> None:
        async for ev in stream:
            if ev.type.name == "FINAL_TRANSCRIPT":
                alt = ev.alternatives[0]
                finals.append((time.perf_counter(), alt.end_time - stream.start_time_offset))

    receiver = asyncio.create_task(receive())
    await asyncio.sleep(1.0)  # connected: the handshake is not part of this measure
    pcm = (b"\x10\x00" * frame_samples) * (args.trials * 50)
    step = frame_samples * 2
    next_at = time.perf_counter()
    for i in range(0, len(pcm), step):
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        next_at += 0.02
        stream.push_frame(rtc.AudioFrame(pcm[i : i + step], rate, 1, frame_samples))
        pushed_at.append(time.perf_counter())
    await asyncio.sleep(2.0)  # the last finals travel back
    stream.end_input()
    # The existing plugin's stream may not end by itself: what was measured is in by now.
    await asyncio.wait({receiver}, timeout=5.0)
    receiver.cancel()
    await asyncio.gather(receiver, return_exceptions=True)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(stream.aclose(), 10)
    await engine.aclose()
    samples = []
    for at, audio_end in finals:
        # The push that completed `audio_end` seconds of audio: the end of that speech.
        index = math.ceil(audio_end / 0.02 - 1e-6) - 1
        if 0 <= index < len(pushed_at) - 1:  # not the flush at the end of the input
            samples.append(at - pushed_at[index])
    return samples


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        if args.what == "stt":
            samples = await stt_plugin(args, http)
        elif args.plugin == "raw":
            samples = await tts_raw(args, http)
        else:
            samples = await tts_plugin(args, http)
    return {"plugin": args.plugin, "what": args.what, "samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugin", choices=["baseten", "raw"], required=True)
    parser.add_argument("--what", choices=["tts", "tts-prewarm", "stt"], required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--trials", type=int, default=10)
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
