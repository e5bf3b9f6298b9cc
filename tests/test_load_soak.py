# SPDX-License-Identifier: Apache-2.0

"""Load and soak, short: benches/load_soak.py's workload, in this process.

50 STT streams at real-time pace (40 for the whole run, 10 as back-to-back 20 s calls) and 6
TTS WebSocket streams synthesizing a sentence again and again, for 60 s, against
benches/bench_server.py in a process of its own; half the streams of each kind speak Whisper and
Orpheus, half Qwen3-ASR and Qwen3-TTS. The benchmark (`python benches/load_soak.py
load|soak`) reports the speed figures; this test checks only what must hold at any speed.

Growth thresholds, per minute after a 20 s warm-up (40 samples, 1 s apart), from measurement
(healthy: runs of this test at 100 s and 60 s; leaks: the same run with the leak patched into
the plugin):
- RSS: healthy 0.09 to 0.13 MB/min (up to 3.0 while the workload's calls all started at once,
  an allocator high-water mark creeping while Python's live allocations stayed flat), so
  8 MB/min. Keeping a copy of every input frame (2500 a second here, 640 bytes of PCM each)
  measured 119 MB/min; keeping every final transcript event (as the existing plugin does)
  15.9 MB/min.
- Python's live allocations (`sys.getallocatedblocks()`, no allocator noise): healthy 1.2k
  blocks/min (the sampler's own records and the collector's sawtooth), so 50k. The two leaks
  measured 151k and 212k.
- fds and tasks: exactly flat in healthy runs; one socket or task kept per call or synthesis
  would be 30 to 70/min here (a stream between two calls can dip one sample: tolerated).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benches"))
import load_soak

pytestmark = [pytest.mark.load, pytest.mark.slow, pytest.mark.xdist_group("realtime")]

SECONDS = 60.0
CALLS_EACH = int(SECONDS // 20.0)  # the back-to-back calls each churning stream makes
MAX_RSS_MB_PER_MIN = 8.0
MAX_HEAP_BLOCKS_PER_MIN = 50_000.0
MAX_FDS_PER_MIN = 3.0
MAX_TASKS_PER_MIN = 10.0


async def test_fifty_streams_for_a_minute_deliver_everything_and_leak_nothing() -> None:
    cfg = load_soak.Config(
        mode="soak",
        streams=40,
        churn_streams=10,
        call_seconds=20.0,
        tts_streams=6,
        qwen3_share=0.5,
        seconds=SECONDS,
        sample_every=1.0,
        warmup=20.0,
        max_rss_slope=MAX_RSS_MB_PER_MIN,
        max_fd_slope=MAX_FDS_PER_MIN,
        max_task_slope=MAX_TASKS_PER_MIN,
        max_heap_blocks_slope=MAX_HEAP_BLOCKS_PER_MIN,
    )
    with load_soak.bench_server(cfg.final_every, cfg.words_ms) as url:
        cfg.url = url
        fds_before, tasks_before = load_soak.open_fds(), len(asyncio.all_tasks())
        # Every await inside is bounded too; this bounds the whole.
        report = await asyncio.wait_for(load_soak.run(cfg), SECONDS + 60)
        fds_after, tasks_after = load_soak.open_fds(), len(asyncio.all_tasks())
    summary = {k: v for k, v in report.items() if k not in ("config", "samples")}
    print(summary)  # the figures, for `pytest -s`

    # Every call got every final the server owes; every synthesis all its audio.
    assert report["stt_calls"] >= 40 + 10 * (CALLS_EACH - 1), summary
    assert report["stt_calls_complete"] == report["stt_calls"], summary
    assert report["tts_syntheses"] >= 6 * int(SECONDS * 0.15), summary
    assert report["tts_complete"] == report["tts_syntheses"], summary
    # Half of them on each protocol.
    assert report["qwen3_stt_calls_complete"] >= 20 + 5 * (CALLS_EACH - 1), summary
    assert report["qwen3_tts_complete"] >= 3 * int(SECONDS * 0.15), summary
    assert report["errors"] == 0, summary
    # Every stream ended by itself after end_input, and closed within the bound.
    assert report["unfinished_streams"] == 0 and report["hung_closes"] == 0, summary
    # Everything closed: its sockets and tasks are gone.
    assert fds_after == fds_before, summary
    assert tasks_after == tasks_before, summary
    # Nothing grew while the streams ran.
    assert report["samples_in_slopes"] >= 30, summary
    assert report["rss_slope_mb_per_min"] <= MAX_RSS_MB_PER_MIN, summary
    assert report["heap_blocks_slope_per_min"] <= MAX_HEAP_BLOCKS_PER_MIN, summary
    assert abs(report["fd_slope_per_min"]) <= MAX_FDS_PER_MIN, summary
    assert abs(report["task_slope_per_min"]) <= MAX_TASKS_PER_MIN, summary
    assert report["ok"], summary
