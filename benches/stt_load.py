# SPDX-License-Identifier: Apache-2.0

"""One load run: N concurrent STT streams in this process, against benches/bench_server.py.

Runs under either plugin's virtualenv (ours, or the existing pure-Python one), so the same
workload measures both. Prints one JSON object.

    python benches/stt_load.py --plugin baseten|null|raw --url ws://127.0.0.1:8766/ws \
        --streams 50 --rate 48000 --seconds 20 --pace realtime|fast [--model qwen3-asr]

With `--model qwen3-asr` (and the server's `/qwen3` URL) the streams speak Qwen3-ASR: 100 ms
base64 JSON messages instead of 32 ms binary frames.

- baseten: `livekit.plugins.baseten.STT` as installed in this interpreter;
- null: the same driver loop pushing into a stream that does nothing (the driver's own cost,
  subtracted by the harness);
- raw: the floor, what sending the audio costs at all: after the WebSocket handshake, one
  ready-made 1024-byte binary frame written to the socket with a bare `write(2)` every 32 ms
  (no framing, no masking, no asyncio transport: the kernel's loopback send and the loop
  that paces it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import gc
import json
import math
import os
import re
import resource
import statistics
import time
from collections import defaultdict
from typing import Any

import aiohttp
import numpy as np
from exit_now import exit_now
from livekit import rtc

FRAME_MS = 20
WIRE_FRAME_S = 0.032
# Which stream a send belongs to: set before the plugin creates the stream, and inherited by
# every task the plugin starts for it, so the same hook serves either plugin.
_stream_index: contextvars.ContextVar[int] = contextvars.ContextVar("stream", default=-1)
_send_times: dict[int, list[float]] = defaultdict(list)
_push_start: dict[int, float] = {}
# A 1024-byte audio payload in a masked client WebSocket frame: 4 header bytes (FIN + binary,
# mask bit + 16-bit length), 4 of mask.
_WIRE_MESSAGE_BYTES = 1024 + 8
# Qwen3-ASR's: `{"type":"input_audio_buffer.append","audio":"<base64 of 3200 bytes>"}`, as
# this plugin writes it and (with json.dumps' spaces after `:` and `,`) as the existing one does.
_QWEN3_MESSAGE_BYTES = len('{"type":"input_audio_buffer.append","audio":""}') + 3200 // 3 * 4 + 4
_QWEN3_WIRE_MESSAGE_BYTES = {_QWEN3_MESSAGE_BYTES + 8, _QWEN3_MESSAGE_BYTES + 3 + 8}
_audio_message_bytes = {_WIRE_MESSAGE_BYTES}
# The raw floor's frame, built once: an all-zero mask leaves the (silent) payload as it is.
WIRE_MESSAGE = bytes([0x82, 0x80 | 126, 0x04, 0x00]) + bytes(4) + bytes(1024)
assert len(WIRE_MESSAGE) == _WIRE_MESSAGE_BYTES


def _instrument_sends() -> None:
    """Records when every audio message reaches the socket's transport, per stream, for either
    plugin: ours writes frames to the transport itself, the existing one through aiohttp's
    send_bytes, which ends in the same call."""
    transport_class: Any = asyncio.selector_events._SelectorSocketTransport  # type: ignore[attr-defined]
    original = transport_class.write

    def write(self: asyncio.Transport, data: bytes | bytearray | memoryview) -> None:
        original(self, data)
        if len(data) in _audio_message_bytes:
            _send_times[_stream_index.get()].append(time.monotonic())

    transport_class.write = write


class _GcClock:
    """Every garbage collection's pause, by generation: a full collection (generation 2) walks
    every object the streams keep, a young one only what was allocated lately, so the two say
    different things about a plugin."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._start))

    def max_ms(self, *generations: int) -> float:
        return max((p for g, p in self.pauses if g in generations), default=0.0) * 1000

    def full_collections(self) -> int:
        return sum(1 for g, _ in self.pauses if g == 2)


def tone_frame(rate: int) -> rtc.AudioFrame:
    n = rate * FRAME_MS // 1000
    t = np.arange(n) / rate
    pcm = (6000 * np.sin(2 * math.pi * 300 * t)).astype(np.int16).tobytes()
    return rtc.AudioFrame(pcm, rate, 1, n)


class _NullStream:
    def push_frame(self, frame: rtc.AudioFrame) -> None:
        pass


async def run(args: argparse.Namespace) -> dict[str, Any]:
    global _audio_message_bytes
    qwen3 = args.model == "qwen3-asr"
    if qwen3:
        if args.plugin == "raw":
            raise SystemExit("--plugin raw measures the Whisper floor only")
        _audio_message_bytes = _QWEN3_WIRE_MESSAGE_BYTES
    wire_frame_s = 0.1 if qwen3 else WIRE_FRAME_S
    _instrument_sends()
    gc_clock = _GcClock()
    frame = tone_frame(args.rate)
    n_frames = int(args.seconds * 1000 / FRAME_MS)
    expected_finals = int(args.seconds // args.final_every)
    latencies: list[float] = []
    hung_closes: list[int] = []
    finals = 0
    # No connection limit, for either plugin: every open WebSocket holds one of the connector's
    # slots, and aiohttp's default of 100 would hold streams past the 100th in the connect
    # timeout (seconds of lateness that measure the pool, not the plugin).
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        engine: Any = None
        if args.plugin == "baseten":
            from livekit.plugins import baseten

            engine = baseten.STT(
                api_key="bench", model_endpoint=args.url, http_session=http, model=args.model
            )
        # What LiveKit's job processes do once their modules are loaded
        # (livekit.agents.ipc._preload_freeze): without it the first full collection after the
        # imports walks every module object, a 100-200 ms pause that is no plugin's doing.
        gc.collect()
        gc.freeze()

        finals_per_stream: dict[int, int] = defaultdict(int)
        owed: dict[int, asyncio.Event] = defaultdict(asyncio.Event)  # set once all finals came

        async def consume(stream: Any, index: int) -> None:
            nonlocal finals
            async for ev in stream:
                if ev.type.name == "FINAL_TRANSCRIPT":
                    received = time.time()
                    finals += 1
                    finals_per_stream[index] += 1
                    if finals_per_stream[index] >= expected_finals:
                        owed[index].set()
                    if m := re.search(r"t(\d+\.\d+)", ev.alternatives[0].text):
                        latencies.append(received - float(m.group(1)))

        async def one(index: int) -> None:
            _stream_index.set(index)  # this task's context, and every task created from it
            ws, fd = None, -1
            if args.plugin == "raw":
                ws = await http.ws_connect(args.url)
                await ws.send_str("{}")
                fd = ws.get_extra_info("socket").fileno()
            stream: Any = engine.stream() if engine else _NullStream()
            consumer = asyncio.create_task(consume(stream, index)) if engine else None
            # Spread the streams over a frame period, as real calls are.
            await asyncio.sleep(index * FRAME_MS / 1000 / args.streams)
            loop = asyncio.get_running_loop()
            pushed = 0
            start = loop.time()
            _push_start[index] = start  # loop.time() is time.monotonic()
            for k in range(n_frames):
                if args.pace == "realtime":
                    await asyncio.sleep(max(0.0, start + k * FRAME_MS / 1000 - loop.time()))
                elif k % 50 == 0:
                    await asyncio.sleep(0)
                if ws is not None:
                    # A 1024-byte wire frame whenever 512 samples (at 16 kHz) have come in.
                    pushed += 320
                    if pushed >= 512:
                        pushed -= 512
                        # 1 KiB every 32 ms to a server that reads: the socket buffer never
                        # fills, and a short write would stop the run rather than skew it.
                        if os.write(fd, WIRE_MESSAGE) != len(WIRE_MESSAGE):
                            raise RuntimeError("short write on the raw floor's socket")
                else:
                    stream.push_frame(frame)
            if ws is not None:
                await ws.close()
                return
            if consumer is None:
                return
            stream.end_input()
            # The existing plugin never ends a stream by itself: wait for the finals the
            # server owes, then close (ours ends on its own, usually sooner).
            if expected_finals:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(owed[index].wait(), 10)
            try:
                await asyncio.wait_for(stream.aclose(), 10)
            except asyncio.TimeoutError:
                hung_closes.append(index)  # reported, so a hang cannot pass unnoticed
            consumer.cancel()

        gc_clock.pauses.clear()  # only pauses inside the measured window
        # The measured window: every stream's whole life, from its construction (the plugin's
        # per-stream state, its pipeline at the first frame) through the connection's
        # handshake, the audio and the finals, to its close.
        # process_time: ns resolution; os.times() counts 10 ms ticks, too coarse for one stream
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.gather(*(one(i) for i in range(args.streams)))
        cpu1, wall1 = time.process_time(), time.monotonic()
    # The HTTP session's close (connections a plugin left open) is after the window; the
    # harness also counts the whole process (start-up, imports, exit) from outside.
    cpu2 = time.process_time()
    # A wire frame is due once the input frame completing it has been pushed: lateness is how
    # long after that it left (resampling delay included, for whoever resamples).
    lateness = []
    for index, times in _send_times.items():
        if index in _push_start:
            for k, sent in enumerate(times):
                due = math.ceil((k + 1) * wire_frame_s / (FRAME_MS / 1000) - 1e-9) - 1
                lateness.append(sent - (_push_start[index] + due * FRAME_MS / 1000))
    cpu = cpu1 - cpu0
    return {
        "plugin": args.plugin,
        "model": args.model,
        "streams": args.streams,
        "rate": args.rate,
        "pace": args.pace,
        "audio_s": args.seconds * args.streams,
        "cpu_s": cpu,
        # Before the window (interpreter, imports, the engine) and after it (the session's
        # close), in this process.
        "cpu_before_s": cpu0,
        "cpu_session_close_s": cpu2 - cpu1,
        "wall_s": wall1 - wall0,
        "finals": finals,
        "expected_finals": expected_finals * args.streams,
        "final_latencies": [round(x, 6) for x in latencies],
        "final_latency_p50": statistics.median(latencies) if latencies else None,
        "final_latency_p99": float(np.percentile(latencies, 99)) if latencies else None,
        "lateness_p50": statistics.median(lateness) if lateness else None,
        "lateness_p99": float(np.percentile(lateness, 99)) if lateness else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "gc_max_pause_ms": gc_clock.max_ms(0, 1, 2),
        "gc_max_young_pause_ms": gc_clock.max_ms(0, 1),
        "gc_full_collections": gc_clock.full_collections(),
        "hung_closes": len(hung_closes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugin", choices=["baseten", "null", "raw"], required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--rate", type=int, default=16000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--pace", choices=["realtime", "fast"], default="realtime")
    parser.add_argument("--final-every", type=float, default=5.0)
    parser.add_argument("--model", choices=["whisper", "qwen3-asr"], default="whisper")
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
    # The existing plugin resamples with rtc.AudioResampler, whose FFI can abort the
    # interpreter's teardown (exit_now says how).
    exit_now(0)
