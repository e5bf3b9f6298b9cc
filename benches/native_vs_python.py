# SPDX-License-Identifier: Apache-2.0

"""Side-by-side timings of the `_native` hot paths against what a plugin user has today.

Each pair runs in the same process, alternating A/B over several trials, and the ratios of the
medians are reported (the machines are noisy; ratios measured together are what we compare).

    python benches/native_vs_python.py            # full run, Markdown table on stdout
    python benches/native_vs_python.py --quick    # a few hundred iterations, for the tests
    python benches/native_vs_python.py --save docs/benchmarks   # also as data, and its plot

Baselines:
- send path: livekit-agents' base `RecognizeStream.push_frame` resampling with
  `rtc.AudioResampler` (HIGH quality, as the base stream does when the input rate differs),
  then `utils.audio.AudioByteStream(512)` and `np.frombuffer(...).tobytes()` per wire frame,
  as the existing plugin's send task does;
- mu-law: CPython's `audioop.lin2ulaw` / `ulaw2lin` (width 2), the C reference;
- parsing: `orjson.loads` plus the walk into `TimedString`s that the existing plugin does.

The send path is timed warm (one stream pushed again and again) and cold (`--cold-streams`
streams pushed round-robin, each push finding its stream's state out of the caches).
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import report
from baseten_messages import transcription
from exit_now import exit_now
from livekit import rtc
from livekit.agents.types import TimedString
from livekit.agents.utils.audio import AudioByteStream
from livekit.plugins.baseten import _native

with warnings.catch_warnings():
    # Deprecated in 3.11-3.12; on 3.13+ the same C code comes from audioop-lts.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

FRAME_MS = 20


def tone_frame(rate: int, channels: int = 1) -> rtc.AudioFrame:
    n = rate * FRAME_MS // 1000
    t = np.arange(n) / rate
    mono = (8000 * np.sin(2 * math.pi * 440 * t)).astype(np.int16)
    data = np.repeat(mono, channels) if channels > 1 else mono
    return rtc.AudioFrame(
        data=data.tobytes(), sample_rate=rate, num_channels=channels, samples_per_channel=n
    )


def send_path_existing(rate: int) -> Callable[[rtc.AudioFrame], int]:
    resampler = (
        rtc.AudioResampler(rate, 16000, quality=rtc.AudioResamplerQuality.HIGH)
        if rate != 16000
        else None
    )
    bstream = AudioByteStream(sample_rate=16000, num_channels=1, samples_per_channel=512)

    def step(frame: rtc.AudioFrame) -> int:
        frames = resampler.push(frame) if resampler else [frame]
        sent = 0
        for f in frames:
            for out in bstream.write(f.data.tobytes()):
                sent += len(np.frombuffer(out.data, dtype=np.int16).tobytes())
        return sent

    return step


def send_path_native(rate: int) -> Callable[[rtc.AudioFrame], int]:
    # What the plugin does: frames come out ready for the socket, WebSocket framing included.
    pipeline = _native.SendPipeline(rate, 1, "pcm_s16le", websocket=True)

    def step(frame: rtc.AudioFrame) -> int:
        sent = 0
        # The frame's own buffer, borrowed without a copy.
        for out in pipeline.push(frame._data):
            sent += len(out)
        return sent

    return step


def transcript_message(words: int, is_final: bool) -> str:
    return transcription(num=7, start=0.32, end=0.32 + 0.34 * words, words=words, final=is_final)


def parse_existing(raw: str, offset: float) -> list[TimedString]:
    """orjson plus the walk the existing plugin does (type check, segments, words)."""
    data = orjson.loads(raw)
    if data.get("type", "transcription") != "transcription":
        return []
    words = []
    for seg in data.get("segments", []):
        wts = seg.get("word_timestamps") or []
        if wts:
            for w in wts:
                words.append(
                    TimedString(
                        text=w.get("word", "").strip(),
                        start_time=w.get("start_time", 0.0) + offset,
                        end_time=w.get("end_time", 0.0) + offset,
                        confidence=w.get("prob", 0.0),
                        start_time_offset=offset,
                    )
                )
        else:
            words.append(
                TimedString(
                    text=seg.get("text", "").strip(),
                    start_time=seg.get("start_time", 0.0) + offset,
                    end_time=seg.get("end_time", 0.0) + offset,
                    start_time_offset=offset,
                )
            )
    " ".join(seg.get("text", "").strip() for seg in data.get("segments", []))
    return words


def parse_native(raw: str, offset: float) -> list[TimedString]:
    msg = _native.parse_message(raw, offset)
    assert isinstance(msg, _native.Transcription)
    return msg.words


@dataclass
class Pair:
    name: str
    existing: Callable[[], object]
    native: Callable[[], object]
    target: str


def time_per_call(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - start) / n / 1000.0


def round_robin(
    make: Callable[[int], Callable[[rtc.AudioFrame], int]], rate: int, streams: int
) -> Callable[[rtc.AudioFrame], int]:
    """One push to each of `streams` send paths in turn: each finds its state out of the
    caches, as in a worker process with hundreds of calls."""
    steps = itertools.cycle([make(rate) for _ in range(streams)])

    def step(frame: rtc.AudioFrame) -> int:
        return next(steps)(frame)

    return step


def pairs(cold_streams: int) -> list[Pair]:
    out = []
    for rate, target in ((16000, ">= 5x"), (24000, ">= 10x"), (48000, ">= 10x")):
        frame = tone_frame(rate)
        existing, native = send_path_existing(rate), send_path_native(rate)
        out.append(
            Pair(
                f"send path, 20 ms frame at {rate // 1000} kHz",
                lambda f=frame, e=existing: e(f),  # type: ignore[misc]
                lambda f=frame, n=native: n(f),  # type: ignore[misc]
                target,
            )
        )
    for rate in (24000, 48000):
        frame = tone_frame(rate)
        existing = round_robin(send_path_existing, rate, cold_streams)
        native = round_robin(send_path_native, rate, cold_streams)
        out.append(
            Pair(
                f"send path, 20 ms frame at {rate // 1000} kHz, cold ({cold_streams} streams)",
                lambda f=frame, e=existing: e(f),  # type: ignore[misc]
                lambda f=frame, n=native: n(f),  # type: ignore[misc]
                "(reported)",
            )
        )
    pcm = tone_frame(16000).data.tobytes()[:1024]
    out.append(
        Pair(
            "mu-law encode, 512 samples",
            lambda: audioop.lin2ulaw(pcm, 2),
            lambda: _native.mulaw_encode(pcm),
            ">= 1x",
        )
    )
    ulaw = audioop.lin2ulaw(pcm, 2)
    out.append(
        Pair(
            "mu-law decode, 512 bytes",
            lambda: audioop.ulaw2lin(ulaw, 2),
            lambda: _native.mulaw_decode(ulaw),
            "(none)",
        )
    )
    for words, is_final, label in ((12, False, "12-word partial"), (40, True, "40-word final")):
        raw = transcript_message(words, is_final)
        assert [str(w) for w in parse_existing(raw, 1.0)] == [
            str(w) for w in parse_native(raw, 1.0)
        ]
        out.append(
            Pair(
                f"parse + timed words, {label}",
                lambda r=raw: parse_existing(r, 1.0),  # type: ignore[misc]
                lambda r=raw: parse_native(r, 1.0),  # type: ignore[misc]
                ">= 1.5x",
            )
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny run that only proves it works")
    parser.add_argument("--trials", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument(
        "--cold-streams", type=int, default=500, help="send paths pushed round-robin (cold)"
    )
    parser.add_argument(
        "--save", type=Path, metavar="DIR", help="also write hot-paths.json and its plot here"
    )
    args = parser.parse_args()
    trials, calls = (2, 200) if args.quick else (args.trials, args.calls)
    if args.quick:
        args.cold_streams = min(args.cold_streams, 20)

    print(f"Python {sys.version.split()[0]}, {trials} trials x {calls} calls, medians in us/call\n")
    print("| hot path | existing (us) | native (us) | speed-up | target |")
    print("|---|---:|---:|---:|---|")
    rows = []
    for pair in pairs(args.cold_streams):
        ex, na = [], []
        for _ in range(trials):
            ex.append(time_per_call(pair.existing, calls))
            na.append(time_per_call(pair.native, calls))
        e, n = statistics.median(ex), statistics.median(na)
        print(f"| {pair.name} | {e:.2f} | {n:.2f} | {e / n:.1f}x | {pair.target} |")
        rows.append(
            {
                "name": pair.name,
                "existing_us": e,
                "native_us": n,
                "speedup": e / n,
                "target": pair.target,
            }
        )
    if args.save:
        data = {
            "schema": report.HOT_PATHS_SCHEMA,
            "conditions": {
                "source": "benches/native_vs_python.py" + (" --quick" if args.quick else ""),
                "measured": time.strftime("%Y-%m-%d", time.gmtime()),
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
                "python": f"{platform.python_implementation()} {platform.python_version()}",
                "trials": trials,
                "calls": calls,
                "cold_streams": args.cold_streams,
                "notes": [],
            },
            "rows": rows,
        }
        report.save(data, args.save / "hot-paths.json")
        report.plot_hot_paths(data, args.save)
    return 0


if __name__ == "__main__":
    # Not SystemExit: the interpreter's teardown can abort with the FFI that rtc.AudioResampler
    # started (exit_now says how).
    exit_now(main())
