# SPDX-License-Identifier: Apache-2.0

"""What LiveKit's job processes run in tests/test_worker.py: a module of its own, because the
process pool hands its functions to the job processes by name.

`setup` is the worker's `setup_fnc` (prewarm_fnc): it builds nothing that needs a job (the
HTTP session is the job's), only the options, once per process. `entrypoint` runs one voice
turn against the local server named in the job's metadata: the TTS speaks a sentence, the
STT hears it back, and the job writes what happened to `<out>/<job id>.json`.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from livekit import rtc
from livekit.agents import JobContext, JobProcess, stt
from livekit.plugins import baseten
from livekit.plugins.baseten import _native


def setup(proc: JobProcess) -> None:
    proc.userdata["setup_pid"] = os.getpid()


def masking_keys(count: int) -> list[str]:
    """The masking keys of the next `count` audio frames this process would send."""
    pipeline = _native.SendPipeline(16000, 1, "pcm_s16le", websocket=True)
    frames = pipeline.push(bytes(1024 * count), 16000, 1)
    return [frame[4:8].hex() for frame in frames]


async def entrypoint(ctx: JobContext) -> None:
    job: dict[str, Any] = json.loads(ctx.job.metadata)
    result: dict[str, Any] = {
        "pid": os.getpid(),
        "setup_pid": ctx.proc.userdata.get("setup_pid"),
        "threads_before": threading.active_count(),
        "masks": masking_keys(8),
    }
    tts = baseten.TTS(api_key="local", model_endpoint=job["tts"])
    ear = baseten.STT(api_key="local", model_endpoint=job["stt"])
    tts.prewarm()
    ear.prewarm()
    frame = await tts.synthesize(job["text"]).collect()
    pcm = bytes(9600) + frame.data.tobytes() + bytes(9600)  # 0.2 s of quiet around it
    stream = ear.stream()
    for i in range(0, len(pcm), 960):
        chunk = pcm[i : i + 960]
        stream.push_frame(rtc.AudioFrame(chunk, 24000, 1, len(chunk) // 2))
    stream.end_input()
    finals = [
        ev.alternatives[0].text
        async for ev in stream
        if ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT
    ]
    await stream.aclose()
    await tts.aclose()
    await ear.aclose()
    result["heard"] = " ".join(finals)
    result["audio_s"] = frame.duration
    out = Path(job["out"]) / f"{ctx.job.id}.json"
    out.write_text(json.dumps(result))
    ctx.shutdown("turn done")
