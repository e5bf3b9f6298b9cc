# SPDX-License-Identifier: Apache-2.0

"""One voice turn with the `livekit.plugins.baseten` installed in this interpreter, through
the same `run_turn` that `livekit-baseten turn` runs (loaded from this repository's source, so
the existing plugin is driven exactly as ours is). Prints the outcome as one JSON object.

    python benches/wan_turn.py --question samples/question.wav --stt ws://.../whisper/websocket \
        --tts ws://.../orpheus/websocket --llm http://.../v1
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp

SAMPLE_RATE = 16000
VOICE_TURN = Path(__file__).resolve().parents[1] / "python/livekit/plugins/baseten/voice_turn.py"


def load_run_turn() -> Any:
    spec = importlib.util.spec_from_file_location("voice_turn", VOICE_TURN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["voice_turn"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.run_turn


def read_audio(path: Path) -> bytes:
    """As `livekit-baseten turn` reads its input: 16 kHz mono int16, resampled by PyAV."""
    import av

    pcm = bytearray()
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        for frame in [*container.decode(audio=0), None]:
            for out in resampler.resample(frame):
                pcm += bytes(out.planes[0])[: out.samples * 2]
    return bytes(pcm)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from livekit.plugins import baseten

    run_turn = load_run_turn()
    pcm = read_audio(args.question)
    async with aiohttp.ClientSession() as http:
        result = await run_turn(
            pcm,
            SAMPLE_RATE,
            stt_engine=baseten.STT(api_key="local", model_endpoint=args.stt, http_session=http),
            llm_engine=baseten.LLM(api_key="local", base_url=args.llm, model="local-stand-in"),
            tts_engine=baseten.TTS(api_key="local", model_endpoint=args.tts, http_session=http),
            timeout=args.timeout,
        )
    outcome = asdict(result)
    del outcome["audio"]
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--question", type=Path, required=True)
    parser.add_argument("--stt", required=True)
    parser.add_argument("--tts", required=True)
    parser.add_argument("--llm", required=True)
    parser.add_argument("--timeout", type=float, default=60.0, help="for the reply")
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
