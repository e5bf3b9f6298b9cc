# SPDX-License-Identifier: Apache-2.0

"""Load and soak: many STT and TTS streams in this process, against benches/bench_server.py.

    python benches/load_soak.py load [--streams 500] [--seconds 60] [--rate 16000]
    python benches/load_soak.py soak [--minutes 30] [--streams 100]

Both modes run the same workload, in one process, through `livekit.plugins.baseten` as
installed here:

- `--streams` STT streams, each fed a 20 ms frame of tone at real-time pace for the whole run
  (a long call), then `end_input()`: a leak that grows with a stream's age shows in RSS;
- `--churn-streams` more STT streams, each a series of back-to-back calls of
  `--call-seconds` (a fresh stream per call): a leak per stream shows in RSS, fds and tasks;
- `--tts-streams` TTS WebSocket streams, each synthesizing `--sentence` again and again.

With `--qwen3-share F`, that share of each kind of stream speaks the Qwen3 protocols instead
(Qwen3-ASR on `/qwen3`, Qwen3-TTS on `/qwen3-tts`, one TTS and so one warm socket per stream,
as one per agent); the rest speak Whisper and Orpheus.

Every STT call must get every final the server owes: the bench server sends one per
`--final-every` seconds of audio and one for the rest after end_audio, so a call's finals must
tile its audio from 0 to the end. Each final's first word is `t<server send time>`: the
delivery latency (server send -> FINAL_TRANSCRIPT event, which is what the client adds on a
local socket). Every synthesis must get exactly the samples the server spoke. Streams must end
by themselves after `end_input()`, and `aclose()` must return within `--close-timeout`.

While the workload runs, RSS, open fds, asyncio tasks and Python's live allocations
(`sys.getallocatedblocks()`: a leak of objects without the allocator's noise) are sampled
every `--sample-every` seconds; after `--warmup` seconds the least-squares slopes (per minute)
are reported. At the end, with every stream closed, fds and tasks must be back at their
values before the run. CPU is the whole process's (plugin, the driver that pushes frames, the
event loop), per stream-hour of STT and TTS streams together; the event loop's lag (how late
a 50 ms timer fires) shows how close to saturation the loop ran.

Prints one JSON object; exits 1 when a transcript or audio is missing, a stream hung or
failed, fds or tasks did not come back, or (soak) a slope is over its threshold. Starts
`bench_server.py` in a process of its own on a free port, unless `--url ws://host:port` is
given (that server must then run with the same `--final-every`; `--words-ms` and the TTS pace
travel in the URL's query string).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import resource
import select
import socket
import statistics
import subprocess
import sys
import time
from array import array
from collections.abc import Coroutine, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from bench_server import FRAME_S, TTS_SAMPLE_RATE, tts_samples_per_word
from livekit import rtc
from stt_load import FRAME_MS, tone_frame

HERE = Path(__file__).resolve().parent
SENTENCE = "Thanks for calling, your order shipped this morning and should arrive on Friday."
# Drivers: one task per phase pushes a frame to each of its streams every 20 ms, the phases
# spread evenly over the period. Far fewer wake-ups than a task per stream (the CPU measured
# is the plugin's, not the driver's), while the streams' sends still spread over time.
PHASES = 10
LAG_PROBE_S = 0.05
WIRE_RATE = 16000  # what the plugin sends (pcm_s16le), in frames of WIRE_SAMPLES
WIRE_SAMPLES = 512
QWEN3_CHUNK_S = 0.1  # what a Qwen3-ASR append message carries
# Final times are rounded to the millisecond by the server.
TIME_TOLERANCE_S = 0.0015

# Soak thresholds, per minute after the warm-up. `soak --minutes 5` with the defaults (100 STT
# streams, 10 TTS) measured RSS +0.04 to +0.2 MB/min, fds 0, tasks 0 to +0.2 (a stream between
# two calls can dip a sample), Python's live blocks +0.8k (the sampler's own records, the
# collector's sawtooth). At this size keeping a copy of every input frame would cost ~240 MB/min
# and keeping every final transcript event ~32 MB/min and ~420k blocks/min (2x what
# tests/test_load_soak.py measured at 50 streams); one socket or task kept per call or
# synthesis would be 40 to 140/min.
SOAK_MAX_RSS_SLOPE_MB_MIN = 3.0
SOAK_MAX_FD_SLOPE_MIN = 1.0
SOAK_MAX_TASK_SLOPE_MIN = 2.0
SOAK_MAX_HEAP_BLOCKS_SLOPE_MIN = 20000.0


@dataclass
class Config:
    mode: str = "load"
    streams: int = 500  # long-lived STT streams: one call for the whole run
    churn_streams: int = 0  # STT streams that are back-to-back calls of call_seconds
    call_seconds: float = 30.0
    tts_streams: int = 50
    qwen3_share: float = 0.0  # the share of each kind of stream on the Qwen3 protocols
    seconds: float = 60.0  # how long the workload runs
    rate: int = 16000
    final_every: float = 5.0
    words_ms: float = 300.0
    tts_speed: float = 1.0
    sentence: str = SENTENCE
    sample_every: float = 5.0
    warmup: float = 20.0  # seconds left out of the slopes
    close_timeout: float = 10.0  # aclose() longer than this is a hung close
    end_timeout: float = 30.0  # a stream must end by itself this long after end_input
    max_rss_slope: float | None = None  # MB/min; None: not a pass condition (load mode)
    max_fd_slope: float | None = None  # per minute
    max_task_slope: float | None = None  # per minute
    max_heap_blocks_slope: float | None = None  # per minute
    url: str = ""  # ws://host:port of a bench server
    out: str = ""  # a file for the whole report, samples included


@dataclass
class Sample:
    t: float  # seconds since the workload started
    rss_mb: float
    fds: int
    tasks: int
    heap_blocks: int  # sys.getallocatedblocks(): Python's live allocations, no allocator noise


@dataclass
class Tally:
    stt_calls: int = 0
    stt_calls_complete: int = 0
    finals: int = 0
    tts_syntheses: int = 0
    tts_complete: int = 0
    qwen3_stt_calls_complete: int = 0
    qwen3_tts_complete: int = 0
    errors: list[str] = field(default_factory=list)  # the first few, for the report
    error_count: int = 0
    hung_closes: int = 0
    unfinished: int = 0  # streams that did not end by themselves after end_input
    latencies: array[float] = field(default_factory=lambda: array("d"))
    loop_lags: array[float] = field(default_factory=lambda: array("d"))
    problems: list[str] = field(default_factory=list)  # the first few incomplete calls

    def error(self, what: str) -> None:
        self.error_count += 1
        if len(self.errors) < 10:
            self.errors.append(what)

    def problem(self, what: str) -> None:
        if len(self.problems) < 10:
            self.problems.append(what)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def slope_per_minute(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 3:
        return None
    ts = [t for t, _ in points]
    vs = [v for _, v in points]
    t_mean, v_mean = statistics.fmean(ts), statistics.fmean(vs)
    var = sum((t - t_mean) ** 2 for t in ts)
    if var == 0:
        return None
    return 60 * sum((t - t_mean) * (v - v_mean) for t, v in points) / var


class FinalsCheck:
    """Whether a call's finals are all the server owes, checked as they come (nothing kept
    per final, so the check itself cannot look like a leak): they must tile the audio from 0
    to its end, every one but the last `final_every` long (in wire frames of `frame_s`). The
    end may be `silence_s` late: Qwen3-ASR's commit always rides on an append, one of silence
    when the audio ended on a chunk's edge."""

    def __init__(self, final_every: float, frame_s: float = FRAME_S, silence_s: float = 0.0):
        self._frame_s = frame_s
        self._silence_s = silence_s
        self._per_final = round(final_every / frame_s) * frame_s
        self._end = 0.0
        self._short = False  # a final shorter than the rest came: it must be the last
        self.count = 0
        self.problem = ""

    def add(self, start: float, stop: float) -> None:
        i, self.count = self.count, self.count + 1
        if self.problem:
            return
        if abs(start - self._end) > TIME_TOLERANCE_S:
            self.problem = (
                f"final {i} starts at {start:.3f}s, the previous ended at {self._end:.3f}s"
            )
        elif self._short or stop - start > self._per_final + TIME_TOLERANCE_S:
            self.problem = f"final {i} spans {start:.3f}-{stop:.3f}s"
        self._short = stop - start < self._per_final - TIME_TOLERANCE_S
        self._end = stop

    def verdict(self, audio_s: float, resampled: bool) -> str:
        """Why the finals are not all the server owes for `audio_s` ("" when they are)."""
        if self.problem or not self.count:
            return self.problem or "no final transcript"
        # 16 kHz audio goes out in wire frames, the last one padded; resampled audio may come
        # out up to a frame longer or shorter (the resampler's delay, flushed).
        end = math.ceil(audio_s / self._frame_s - 1e-9) * self._frame_s
        slack = (self._frame_s if resampled else 0.0) + TIME_TOLERANCE_S
        if not -slack <= self._end - end <= slack + self._silence_s:
            return f"finals end at {self._end:.3f}s, the audio's last frame at {end:.3f}s"
        return ""


class Metronome:
    """Pushes a frame to every registered stream each 20 ms, from PHASES driver tasks."""

    def __init__(self, frame: rtc.AudioFrame) -> None:
        self._frame = frame
        self._phases: list[dict[int, _Feed]] = [{} for _ in range(PHASES)]
        self._next = 0
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for p, feeds in enumerate(self._phases):
            offset = p * FRAME_MS / 1000 / PHASES
            self._tasks.append(asyncio.create_task(self._drive(feeds, t0 + offset)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def feed(self, stream: Any, frames: int) -> asyncio.Future[None]:
        """Pushes `frames` frames into `stream`; the future is done once all are in."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        feed = _Feed(stream, frames, done)
        self._phases[self._next % PHASES][id(feed)] = feed
        self._next += 1
        return done

    async def _drive(self, feeds: dict[int, _Feed], t0: float) -> None:
        loop = asyncio.get_running_loop()
        period = FRAME_MS / 1000
        k = 0
        while True:
            k += 1
            await asyncio.sleep(max(0.0, t0 + k * period - loop.time()))
            for key, feed in list(feeds.items()):
                if feed.done.done():  # the call gave up (its stream failed)
                    del feeds[key]
                    continue
                try:
                    feed.stream.push_frame(self._frame)
                except Exception as e:
                    del feeds[key]
                    feed.done.set_exception(e)
                    continue
                feed.left -= 1
                if feed.left == 0:
                    del feeds[key]
                    feed.done.set_result(None)


@dataclass
class _Feed:
    stream: Any
    left: int
    done: asyncio.Future[None]


async def _bounded_close(stream: Any, cfg: Config, tally: Tally) -> None:
    try:
        await asyncio.wait_for(stream.aclose(), cfg.close_timeout)
    except asyncio.TimeoutError:
        tally.hung_closes += 1


async def stt_call(
    engine: Any, metronome: Metronome, audio_s: float, cfg: Config, tally: Tally
) -> bool:
    """One call: `audio_s` of audio at real-time pace, end_input, every final owed. Returns
    whether it went well."""
    from livekit.agents import stt

    tally.stt_calls += 1
    frames = round(audio_s * 1000 / FRAME_MS)
    audio_s = frames * FRAME_MS / 1000
    stream = engine.stream()
    qwen3 = engine.model == "qwen3-asr"
    if qwen3:
        finals = FinalsCheck(cfg.final_every, QWEN3_CHUNK_S, silence_s=QWEN3_CHUNK_S)
    else:
        finals = FinalsCheck(cfg.final_every)

    async def consume() -> None:
        async for ev in stream:
            if ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT:
                received = time.time()
                alt = ev.alternatives[0]
                finals.add(alt.start_time, alt.end_time)
                first = alt.text.split(maxsplit=1)[0] if alt.text else ""
                if first.startswith("t"):
                    with contextlib.suppress(ValueError):
                        tally.latencies.append(received - float(first[1:]))

    consumer = asyncio.create_task(consume())
    fed = metronome.feed(stream, frames)
    try:
        # The feed takes audio_s; a failing stream ends the consumer (and the call) early.
        await asyncio.wait(
            {fed, consumer}, timeout=audio_s + cfg.end_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if not fed.done():
            fed.cancel()
            if consumer.done() and (error := consumer.exception()) is not None:
                raise error
            raise asyncio.TimeoutError("the frames were not all pushed in time")
        fed.result()
        stream.end_input()
        try:
            await asyncio.wait_for(asyncio.shield(consumer), cfg.end_timeout)
        except asyncio.TimeoutError:
            tally.unfinished += 1
            raise
    except Exception as e:
        tally.error(f"stt: {type(e).__name__}: {e}")
    finally:
        await _bounded_close(stream, cfg, tally)
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
    tally.finals += finals.count
    if problem := finals.verdict(audio_s, resampled=cfg.rate != WIRE_RATE):
        tally.problem(f"stt call: {problem}")
        return False
    tally.stt_calls_complete += 1
    tally.qwen3_stt_calls_complete += qwen3
    return True


def tts_seconds(cfg: Config) -> float:
    """How long the server takes to speak the sentence."""
    samples = len(cfg.sentence.split()) * tts_samples_per_word(cfg.words_ms)
    return samples / TTS_SAMPLE_RATE / cfg.tts_speed if cfg.tts_speed > 0 else 0.0


async def tts_synthesis(engine: Any, cfg: Config, tally: Tally) -> bool:
    """One synthesis of the sentence over the WebSocket, every sample the server spoke.
    Returns whether it went well."""
    tally.tts_syntheses += 1
    expected = len(cfg.sentence.split()) * tts_samples_per_word(cfg.words_ms)
    stream = engine.stream()
    samples = 0

    async def consume() -> None:
        nonlocal samples
        async for ev in stream:
            # The server's tone never crosses zero; the emitter's end-of-segment pad is zeros.
            pcm = np.frombuffer(ev.frame.data, dtype=np.int16)
            samples += int(np.count_nonzero(pcm))

    try:
        stream.push_text(cfg.sentence)
        stream.end_input()
        try:
            await asyncio.wait_for(consume(), tts_seconds(cfg) + cfg.end_timeout)
        except asyncio.TimeoutError:
            tally.unfinished += 1
            raise
    except Exception as e:
        tally.error(f"tts: {type(e).__name__}: {e}")
    finally:
        await _bounded_close(stream, cfg, tally)
    if samples != expected:
        tally.problem(f"tts synthesis: {samples} samples, {expected} spoken")
        return False
    tally.tts_complete += 1
    tally.qwen3_tts_complete += engine.model == "qwen3-tts"
    return True


async def run(cfg: Config) -> dict[str, Any]:
    """Runs the workload against the bench server at `cfg.url`; returns the report. Every
    stream is closed and the session with it before the end values are read."""
    from livekit.plugins import baseten

    tally = Tally()
    samples: list[Sample] = []
    fds_start, tasks_start = open_fds(), len(asyncio.all_tasks())
    rss_start = rss_mb()
    loop = asyncio.get_running_loop()
    query = f"words_ms={cfg.words_ms}&speed={cfg.tts_speed}"
    cpu0, wall0 = os.times(), time.monotonic()
    # No connection limit: the default (100) would queue the 101st WebSocket.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        stt_engine = baseten.STT(api_key="bench", model_endpoint=f"{cfg.url}/ws", http_session=http)
        qwen3_stt = baseten.STT(
            model="qwen3-asr", api_key="bench", model_endpoint=f"{cfg.url}/qwen3", http_session=http
        )
        tts_engine = baseten.TTS(
            api_key="bench", model_endpoint=f"{cfg.url}/tts?{query}", http_session=http
        )
        qwen3_tts = [
            baseten.TTS(
                model="qwen3-tts",
                api_key="bench",
                model_endpoint=f"{cfg.url}/qwen3-tts?{query}",
                http_session=http,
                voice="bench",
                word_timestamps=True,
            )
            for _ in range(round(cfg.tts_streams * cfg.qwen3_share))
        ]
        engines: list[Any] = [stt_engine, qwen3_stt, tts_engine, *qwen3_tts]
        for engine in engines:
            engine.on("error", lambda e: tally.error(f"{type(e).__name__}: {e.error}"))

        def stt_for(index: int, streams: int) -> Any:
            # The first `qwen3_share` of the streams of each kind speak Qwen3-ASR.
            return qwen3_stt if index < round(streams * cfg.qwen3_share) else stt_engine

        metronome = Metronome(tone_frame(cfg.rate))
        metronome.start()
        start = loop.time()
        end = start + cfg.seconds

        async def sampler() -> None:
            while (now := loop.time()) < end:
                samples.append(
                    Sample(
                        now - start,
                        rss_mb(),
                        open_fds(),
                        len(asyncio.all_tasks()),
                        sys.getallocatedblocks(),
                    )
                )
                await asyncio.sleep(min(cfg.sample_every, max(end - loop.time(), 0.0)))

        async def churn(index: int) -> None:
            # The first calls staggered, so that calls start and end all the time.
            length = cfg.call_seconds * (index + 1) / (cfg.churn_streams + 1)
            while (length := min(length, end - loop.time())) >= 1.0:
                engine = stt_for(index, cfg.churn_streams)
                if not await stt_call(engine, metronome, length, cfg, tally):
                    return  # reported; retrying at once would only repeat it
                length = cfg.call_seconds

        async def tts_loop(index: int) -> None:
            # Staggered over one synthesis, then back to back until the end (the last one
            # runs over it, so the workload stays steady).
            await asyncio.sleep(tts_seconds(cfg) * index / cfg.tts_streams)
            engine = qwen3_tts[index] if index < len(qwen3_tts) else tts_engine
            while loop.time() < end:
                if not await tts_synthesis(engine, cfg, tally):
                    return  # reported; retrying at once would only repeat it

        async def long_call(index: int) -> None:
            # Starts spread over one final's period, as real calls are: the finals (and their
            # parsing) are spread over time instead of arriving all at once.
            await asyncio.sleep(cfg.final_every * index / cfg.streams)
            await stt_call(stt_for(index, cfg.streams), metronome, cfg.seconds, cfg, tally)

        async def lag_probe() -> None:
            # How late the event loop runs a 50 ms timer: the delay every callback sees.
            while (before := loop.time()) < end:
                await asyncio.sleep(LAG_PROBE_S)
                tally.loop_lags.append(loop.time() - before - LAG_PROBE_S)

        work: list[Coroutine[Any, Any, object]] = [sampler(), lag_probe()]
        work += [long_call(i) for i in range(cfg.streams)]
        work += [churn(i) for i in range(cfg.churn_streams)]
        work += [tts_loop(i) for i in range(cfg.tts_streams)]
        await asyncio.gather(*work)
        await metronome.stop()
        for engine in engines:
            await asyncio.wait_for(engine.aclose(), cfg.close_timeout)
    cpu1, wall1 = os.times(), time.monotonic()
    return report(cfg, tally, samples, cpu1, cpu0, wall1 - wall0, fds_start, tasks_start, rss_start)


def report(
    cfg: Config,
    tally: Tally,
    samples: list[Sample],
    cpu1: os.times_result,
    cpu0: os.times_result,
    wall_s: float,
    fds_start: int,
    tasks_start: int,
    rss_start: float,
) -> dict[str, Any]:
    fds_end, tasks_end = open_fds(), len(asyncio.all_tasks())
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    stream_hours = (cfg.streams + cfg.churn_streams + cfg.tts_streams) * cfg.seconds / 3600
    steady = [s for s in samples if s.t >= cfg.warmup]
    slopes = {
        "rss_mb": slope_per_minute([(s.t, s.rss_mb) for s in steady]),
        "fds": slope_per_minute([(s.t, s.fds) for s in steady]),
        "tasks": slope_per_minute([(s.t, s.tasks) for s in steady]),
        "heap_blocks": slope_per_minute([(s.t, s.heap_blocks) for s in steady]),
    }

    def under(value: float | None, limit: float | None) -> bool:
        return limit is None or (value is not None and value <= limit)

    checks = {
        "every_final_delivered": tally.stt_calls_complete == tally.stt_calls
        and (tally.stt_calls > 0 or cfg.streams + cfg.churn_streams == 0),
        "every_tts_audio_complete": tally.tts_complete == tally.tts_syntheses
        and (tally.tts_syntheses > 0 or cfg.tts_streams == 0),
        "no_errors": tally.error_count == 0,
        "no_hung_close": tally.hung_closes == 0,
        "every_stream_ended": tally.unfinished == 0,
        "fds_back_to_start": fds_end <= fds_start,
        "tasks_back_to_start": tasks_end == tasks_start,
        "rss_slope_ok": under(slopes["rss_mb"], cfg.max_rss_slope),
        "fd_slope_ok": under(slopes["fds"], cfg.max_fd_slope),
        "task_slope_ok": under(slopes["tasks"], cfg.max_task_slope),
        "heap_slope_ok": under(slopes["heap_blocks"], cfg.max_heap_blocks_slope),
    }
    return {
        "mode": cfg.mode,
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("mode", "sentence", "out")},
        "stt_calls": tally.stt_calls,
        "stt_calls_complete": tally.stt_calls_complete,
        "finals": tally.finals,
        "tts_syntheses": tally.tts_syntheses,
        "tts_complete": tally.tts_complete,
        "qwen3_stt_calls_complete": tally.qwen3_stt_calls_complete,
        "qwen3_tts_complete": tally.qwen3_tts_complete,
        "errors": tally.error_count,
        "hung_closes": tally.hung_closes,
        "unfinished_streams": tally.unfinished,
        "wall_s": round(wall_s, 1),
        "cpu_s": round(cpu, 1),
        "cpu_cores": round(cpu / wall_s, 3),
        "cpu_s_per_stream_hour": round(cpu / stream_hours, 2) if stream_hours else None,
        **percentiles_ms("final_latency", tally.latencies),
        **percentiles_ms("loop_lag", tally.loop_lags),
        "rss_mb_start": round(rss_start, 1),
        "rss_mb_peak": round(max([s.rss_mb for s in samples] + [rss_mb()]), 1),
        "rss_mb_end": round(rss_mb(), 1),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "fds_start": fds_start,
        "fds_peak": max([s.fds for s in samples], default=fds_end),
        "fds_end": fds_end,
        "tasks_start": tasks_start,
        "tasks_peak": max([s.tasks for s in samples], default=tasks_end),
        "tasks_end": tasks_end,
        "rss_slope_mb_per_min": _round(slopes["rss_mb"], 3),
        "fd_slope_per_min": _round(slopes["fds"], 3),
        "task_slope_per_min": _round(slopes["tasks"], 3),
        "heap_blocks_slope_per_min": _round(slopes["heap_blocks"], 0),
        "samples_in_slopes": len(steady),
        "checks": checks,
        "ok": all(checks.values()),
        "first_errors": tally.errors,
        "first_problems": tally.problems,
        # [seconds, RSS MB, fds, tasks, heap blocks], every sample: the shape behind the slopes.
        "samples": [
            [round(s.t, 1), round(s.rss_mb, 2), s.fds, s.tasks, s.heap_blocks] for s in samples
        ],
    }


def percentiles_ms(name: str, seconds: array[float]) -> dict[str, float | None]:
    ms = np.array(seconds) * 1000
    return {
        f"{name}_ms_{label}": round(float(np.percentile(ms, q)), 1) if len(ms) else None
        for label, q in (("p50", 50), ("p99", 99), ("max", 100))
    }


def _round(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def bench_server(
    final_every: float, words_ms: float = 300.0, tts_speed: float = 1.0, timeout: float = 20.0
) -> Iterator[str]:
    """`bench_server.py` in a process of its own on a free port; yields its ws://host:port."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(HERE / "bench_server.py"), "--port", str(port),
         "--final-every", str(final_every), "--words-ms", str(words_ms),
         "--tts-speed", str(tts_speed), "--announce"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        ready, _, _ = select.select([server.stdout], [], [], timeout)
        if not ready or server.stdout.readline().strip() != "listening":
            raise RuntimeError(f"bench_server.py did not start listening within {timeout}s")
        yield f"ws://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()


def parse_args(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    modes = parser.add_subparsers(dest="mode")
    load = modes.add_parser("load", help="N=500 STT + 50 TTS streams for 60 s (the default)")
    soak = modes.add_parser("soak", help="100 STT + 10 TTS streams for 30 minutes, slopes")
    for sub, streams, churn, tts, warmup in ((load, 500, 0, None, 20.0), (soak, 80, 20, 10, 120.0)):
        sub.add_argument("--streams", type=int, default=streams, help="long-lived STT streams")
        sub.add_argument(
            "--churn-streams", type=int, default=churn, help="STT streams of back-to-back calls"
        )
        sub.add_argument("--call-seconds", type=float, default=30.0, help="length of those calls")
        sub.add_argument("--tts-streams", type=int, default=tts, help="default: streams / 10")
        sub.add_argument(
            "--qwen3-share", type=float, default=0.0, help="of each kind, on Qwen3 (0 to 1)"
        )
        sub.add_argument("--rate", type=int, default=16000, help="input sample rate (Hz)")
        sub.add_argument("--final-every", type=float, default=5.0)
        sub.add_argument("--words-ms", type=float, default=300.0, help="TTS audio per word")
        sub.add_argument("--tts-speed", type=float, default=1.0, help="TTS pace (x real time)")
        sub.add_argument("--sample-every", type=float, default=5.0)
        sub.add_argument("--warmup", type=float, default=warmup, help="seconds not in slopes")
        sub.add_argument("--close-timeout", type=float, default=10.0)
        sub.add_argument("--url", default="", help="ws://host:port of a running bench server")
        sub.add_argument("--out", default="", help="also write the report, with every sample")
    load.add_argument("--seconds", type=float, default=60.0)
    soak.add_argument("--minutes", type=float, default=30.0)
    soak.add_argument("--max-rss-slope", type=float, default=SOAK_MAX_RSS_SLOPE_MB_MIN)
    soak.add_argument("--max-fd-slope", type=float, default=SOAK_MAX_FD_SLOPE_MIN)
    soak.add_argument("--max-task-slope", type=float, default=SOAK_MAX_TASK_SLOPE_MIN)
    soak.add_argument("--max-heap-blocks-slope", type=float, default=SOAK_MAX_HEAP_BLOCKS_SLOPE_MIN)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("load", "soak", "-h", "--help"):
        argv.insert(0, "load")  # the default mode
    args = parser.parse_args(argv)
    soaking = args.mode == "soak"
    return Config(
        mode=args.mode,
        streams=args.streams,
        churn_streams=args.churn_streams,
        call_seconds=args.call_seconds,
        tts_streams=args.tts_streams if args.tts_streams is not None else args.streams // 10,
        qwen3_share=args.qwen3_share,
        seconds=args.minutes * 60 if soaking else args.seconds,
        rate=args.rate,
        final_every=args.final_every,
        words_ms=args.words_ms,
        tts_speed=args.tts_speed,
        sample_every=args.sample_every,
        warmup=args.warmup,
        close_timeout=args.close_timeout,
        max_rss_slope=args.max_rss_slope if soaking else None,
        max_fd_slope=args.max_fd_slope if soaking else None,
        max_task_slope=args.max_task_slope if soaking else None,
        max_heap_blocks_slope=args.max_heap_blocks_slope if soaking else None,
        url=args.url.rstrip("/"),
        out=args.out,
    )


def main() -> int:
    cfg = parse_args()
    # What LiveKit's job processes do once their modules are loaded
    # (livekit.agents.ipc._preload_freeze): the imports' objects leave the collector's work.
    gc.collect()
    gc.freeze()
    with contextlib.ExitStack() as stack:
        if not cfg.url:
            cfg.url = stack.enter_context(bench_server(cfg.final_every, cfg.words_ms))
        result = asyncio.run(run(cfg))
    if cfg.out:
        Path(cfg.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
